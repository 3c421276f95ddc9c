-- Distinct drivers per cell of resolution $4 over a tenant's cells_1h in [$2, $3).
SELECT fleetpulse_h3_parent(h3_cell, $4) AS cell, count(DISTINCT d)::double precision AS drivers
FROM cells_1h CROSS JOIN LATERAL unnest(driver_ids) AS d
WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
GROUP BY 1
