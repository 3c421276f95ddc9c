-- Geofence enter/exit of one driver in [$2, $3), from changes of positions.geofence_id
-- (what the enrichment worker stamps on each fix).
WITH f AS (
    SELECT fix_time, geofence_id,
           lag(geofence_id) OVER (ORDER BY fix_time) AS prev,
           row_number() OVER (ORDER BY fix_time) AS n
    FROM positions
    WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3
)
SELECT 'geofenceExit' AS kind, fix_time AS at, prev AS geofence_id FROM f
WHERE n > 1 AND prev IS NOT NULL AND prev IS DISTINCT FROM geofence_id
UNION ALL
SELECT 'geofenceEnter', fix_time, geofence_id FROM f
WHERE geofence_id IS NOT NULL AND (n = 1 OR prev IS DISTINCT FROM geofence_id)
ORDER BY at, kind DESC
