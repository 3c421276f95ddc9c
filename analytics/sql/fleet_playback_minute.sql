-- A tenant's per-minute last positions in [$2, $3) inside a lon/lat box.
SELECT driver_id, extract(epoch FROM last_fix_time)::double precision AS t, last_lon AS lon,
       last_lat AS lat, last_speed_kmh::double precision AS speed,
       last_course::double precision AS heading
FROM positions_1m
WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
  AND last_lon BETWEEN $4 AND $6 AND last_lat BETWEEN $5 AND $7
ORDER BY driver_id, bucket
