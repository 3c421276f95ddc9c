-- One driver's per-minute last positions in [$2, $3), oldest first.
SELECT extract(epoch FROM last_fix_time)::double precision AS t, last_lon AS lon,
       last_lat AS lat, last_speed_kmh::double precision AS speed,
       last_course::double precision AS heading
FROM positions_1m
WHERE driver_id = $1 AND bucket >= $2 AND bucket < $3
ORDER BY bucket
