-- Re-materialise positions_1m for [$1, $2): buckets are date_bin with Timescale's origin.
INSERT INTO positions_1m (tenant_id, driver_id, bucket, positions, mean_speed_kmh,
    max_speed_kmh, last_fix_time, last_lon, last_lat, last_speed_kmh, last_course)
SELECT tenant_id,
       driver_id,
       date_bin(INTERVAL '1 minute', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*),
       avg(speed_kmh)::double precision,
       max(speed_kmh),
       max(fix_time),
       (array_agg(lon ORDER BY fix_time DESC))[1],
       (array_agg(lat ORDER BY fix_time DESC))[1],
       (array_agg(speed_kmh ORDER BY fix_time DESC))[1],
       (array_agg(course ORDER BY fix_time DESC))[1]
FROM positions
WHERE fix_time >= $1 AND fix_time < $2
GROUP BY tenant_id, driver_id, bucket
