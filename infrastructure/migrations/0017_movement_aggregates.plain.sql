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

-- driver_daily_stats, the view over driver_daily_motion, is the same on both: 0020.

-- Rows written before 0016 have no labels; re-materialise everything from the start.
DELETE FROM analytics_watermarks;
