-- One driver's daily statistics for the UTC days [$2, $3].
SELECT s.driver_id, s.day, s.positions, s.first_fix, s.last_fix, s.distance_m, s.moving_s,
       s.idle_s, s.stopped_s, s.mean_speed_kmh, s.max_speed_kmh, s.trips, s.stops,
       s.visits_planned, s.visits_completed, s.on_time_share
FROM driver_daily_stats s
WHERE s.driver_id = $1
  AND s.bucket BETWEEN ($2::date::timestamp AT TIME ZONE 'UTC')
                   AND ($3::date::timestamp AT TIME ZONE 'UTC')
ORDER BY s.day
