-- The daily statistics: driver_daily_motion (0017, a continuous aggregate or a table) joined
-- with the day's visits, looked up per row (planned_visits_driver index); one definition for
-- both backends. (Created by 0017 until it moved here: OR REPLACE keeps those databases.)
CREATE OR REPLACE VIEW driver_daily_stats AS
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
