-- Playback, heatmaps and daily statistics on plain PostgreSQL: rollup tables over the per-fix
-- labels of 0016, refreshed incrementally by analytics.refresh with the same definitions as
-- the continuous aggregates of the .timescale variant (same relation names and columns):
--   positions  ->  positions_1m (per driver-minute)  ->  driver_daily_motion (per driver-day)
--   positions  ->  cells_1h (per tenant-hour-H3 res 9)
DROP TABLE driver_daily_stats;
TRUNCATE positions_1m, cells_1h;
ALTER TABLE positions_1m
    ADD COLUMN first_fix_time timestamptz NOT NULL,
    ADD COLUMN distance_m double precision NOT NULL,
    ADD COLUMN moving_s double precision NOT NULL,
    ADD COLUMN idle_s double precision NOT NULL,
    ADD COLUMN stopped_s double precision NOT NULL,
    ADD COLUMN moving_fixes bigint NOT NULL,
    ADD COLUMN moving_speed_sum double precision,
    ADD COLUMN trips bigint NOT NULL,
    ADD COLUMN stops bigint NOT NULL;

CREATE TABLE driver_daily_motion (
    tenant_id           text NOT NULL,
    driver_id           uuid NOT NULL,
    bucket              timestamptz NOT NULL,
    positions           bigint NOT NULL,
    first_fix           timestamptz NOT NULL,
    last_fix            timestamptz NOT NULL,
    distance_m          double precision NOT NULL,
    moving_s            double precision NOT NULL,
    idle_s              double precision NOT NULL,
    stopped_s           double precision NOT NULL,
    mean_speed_kmh      double precision,
    max_speed_kmh       double precision,
    trips               integer NOT NULL,
    stops               integer NOT NULL,
    PRIMARY KEY (driver_id, bucket)
);
CREATE INDEX driver_daily_motion_tenant_bucket ON driver_daily_motion (tenant_id, bucket);

-- The daily statistics: the movement sums joined with the day's visits (looked up per row,
-- planned_visits_driver index), identical on both backends.
CREATE VIEW driver_daily_stats AS
SELECT m.tenant_id,
       m.driver_id,
       (m.bucket AT TIME ZONE 'UTC')::date AS day,
       m.bucket,
       m.positions,
       m.first_fix,
       m.last_fix,
       m.distance_m,
       m.moving_s,
       m.idle_s,
       m.stopped_s,
       m.mean_speed_kmh,
       m.max_speed_kmh,
       m.trips,
       m.stops,
       coalesce(v.planned, 0) AS visits_planned,
       coalesce(v.completed, 0) AS visits_completed,
       v.on_time::double precision / nullif(v.judged, 0) AS on_time_share
FROM driver_daily_motion m
LEFT JOIN LATERAL (
    SELECT count(*)::integer AS planned,
           count(*) FILTER (WHERE pv.status = 'completed' OR vc.visit_id IS NOT NULL)::integer
               AS completed,
           count(*) FILTER (WHERE vc.on_time) AS on_time,
           count(vc.on_time) AS judged
    FROM planned_visits pv
    LEFT JOIN visit_completions vc ON vc.visit_id = pv.id
    WHERE pv.driver_id = m.driver_id
      AND pv.scheduled_date = (m.bucket AT TIME ZONE 'UTC')::date
      AND pv.status <> 'cancelled'
) v ON true;

-- Rows written before 0016 have no labels; re-materialise everything from the start.
DELETE FROM analytics_watermarks;
