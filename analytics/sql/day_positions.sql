-- Fixes of [$1, $2) in driver order, for the daily statistics.
SELECT tenant_id, driver_id, extract(epoch FROM fix_time)::double precision AS t,
       lon, lat, coalesce(speed_kmh, 0)::double precision AS speed
FROM positions
WHERE fix_time >= $1 AND fix_time < $2 AND valid
ORDER BY driver_id, fix_time
