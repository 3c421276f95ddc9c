-- A tenant's cells_1h in [$2, $3) at resolution $4 (parents of the stored res-9 cells).
-- speed: the mean of the fixes' speeds (hourly means weighted by their fix counts).
SELECT fleetpulse_h3_parent(h3_cell, $4) AS cell,
       sum(positions)::double precision AS positions,
       sum(dwell_s) AS dwell,
       sum(mean_speed_kmh * positions) / nullif(sum(positions) FILTER
           (WHERE mean_speed_kmh IS NOT NULL), 0) AS speed
FROM cells_1h
WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
GROUP BY 1
