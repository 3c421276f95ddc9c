-- Re-materialise cells_1h for [$1, $2) on plain PostgreSQL: the SELECT of the continuous
-- aggregate in 0017_movement_aggregates.timescale.sql (dwell: step_s up to 300 s).
INSERT INTO cells_1h (tenant_id, bucket, h3_cell, positions, drivers, driver_ids,
    mean_speed_kmh, dwell_s)
SELECT tenant_id,
       date_bin(INTERVAL '1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       fleetpulse_h3_parent(h3_cell, 9) AS cell,
       count(*),
       count(DISTINCT driver_id),
       array_agg(DISTINCT driver_id),
       avg(speed_kmh)::double precision,
       coalesce(sum(step_s::double precision) FILTER (WHERE step_s <= 300), 0)
FROM positions
WHERE fix_time >= $1 AND fix_time < $2
GROUP BY tenant_id, bucket, cell
