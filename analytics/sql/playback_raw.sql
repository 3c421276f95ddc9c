-- One driver's raw fixes in [$2, $3), oldest first.
SELECT extract(epoch FROM fix_time)::double precision AS t, lon, lat,
       speed_kmh::double precision AS speed, course::double precision AS heading
FROM positions
WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3
ORDER BY fix_time
