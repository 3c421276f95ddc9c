-- A tenant's raw fixes in [$2, $3) inside a lon/lat box, per driver oldest first.
SELECT driver_id, extract(epoch FROM fix_time)::double precision AS t, lon, lat,
       speed_kmh::double precision AS speed, course::double precision AS heading
FROM positions
WHERE tenant_id = $1 AND fix_time >= $2 AND fix_time < $3
  AND lon BETWEEN $4 AND $6 AND lat BETWEEN $5 AND $7
ORDER BY driver_id, fix_time
