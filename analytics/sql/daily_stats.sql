-- Daily statistics of a tenant's drivers for one UTC day.
SELECT s.driver_id, d.name AS driver_name, s.day, s.positions, s.first_fix, s.last_fix,
       s.distance_m, s.moving_s, s.idle_s, s.stopped_s, s.mean_speed_kmh, s.max_speed_kmh,
       s.trips, s.stops, s.visits_planned, s.visits_completed, s.on_time_share
FROM driver_daily_stats s
LEFT JOIN drivers d ON d.id = s.driver_id
-- on bucket, not day: the (tenant_id, bucket) index of driver_daily_motion applies
WHERE s.tenant_id = $1 AND s.bucket = ($2::date::timestamp AT TIME ZONE 'UTC')
ORDER BY d.name, s.driver_id
