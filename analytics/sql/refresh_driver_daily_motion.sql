-- Re-materialise driver_daily_motion for [$1, $2) from positions_1m (stacked, as the
-- continuous aggregate in 0017_movement_aggregates.timescale.sql).
INSERT INTO driver_daily_motion (tenant_id, driver_id, bucket, positions, first_fix, last_fix,
    distance_m, moving_s, idle_s, stopped_s, mean_speed_kmh, max_speed_kmh, trips, stops)
SELECT tenant_id,
       driver_id,
       date_bin(INTERVAL '1 day', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day_bucket,
       sum(positions)::bigint,
       min(first_fix_time),
       max(last_fix_time),
       sum(distance_m),
       sum(moving_s),
       sum(idle_s),
       sum(stopped_s),
       sum(moving_speed_sum) / nullif(sum(moving_fixes), 0),
       max(max_speed_kmh)::double precision,
       sum(trips)::integer,
       sum(stops)::integer
FROM positions_1m
WHERE bucket >= $1 AND bucket < $2
GROUP BY tenant_id, driver_id, day_bucket
