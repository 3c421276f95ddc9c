-- Re-materialise cells_1h for [$1, $2). Each fix dwells the time to the same driver's next
-- fix when that is at most $3 seconds (a longer gap is unknown time, not dwell); fixes up to
-- $3 seconds after $2 are read to find it.
WITH fixes AS (
    SELECT tenant_id, driver_id, fix_time, speed_kmh, h3_cell,
           coalesce(EXTRACT(EPOCH FROM lead(fix_time) OVER w - fix_time), 0) AS gap
    FROM positions
    WHERE fix_time >= $1::timestamptz
      AND fix_time < $2::timestamptz + make_interval(secs => $3::double precision)
    WINDOW w AS (PARTITION BY driver_id ORDER BY fix_time)
)
INSERT INTO cells_1h (tenant_id, bucket, h3_cell, positions, drivers, driver_ids,
    mean_speed_kmh, dwell_s)
SELECT tenant_id,
       date_bin(INTERVAL '1 hour', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       fleetpulse_h3_parent(h3_cell, 9) AS cell,
       count(*),
       count(DISTINCT driver_id),
       array_agg(DISTINCT driver_id),
       avg(speed_kmh)::double precision,
       coalesce(sum(gap) FILTER (WHERE gap <= $3::double precision), 0)::double precision
FROM fixes
WHERE fix_time < $2
GROUP BY tenant_id, bucket, cell
