-- Re-materialise positions_1m for [$1, $2) on plain PostgreSQL: the SELECT of the continuous
-- aggregate in 0017_movement_aggregates.timescale.sql, with date_bin at Timescale's origin.
INSERT INTO positions_1m (tenant_id, driver_id, bucket, positions, mean_speed_kmh,
    max_speed_kmh, first_fix_time, last_fix_time, last_lon, last_lat, last_speed_kmh,
    last_course, distance_m, moving_s, idle_s, stopped_s, moving_fixes, moving_speed_sum,
    trips, stops)
SELECT tenant_id,
       driver_id,
       date_bin(INTERVAL '1 minute', fix_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*),
       avg(speed_kmh)::double precision,
       max(speed_kmh),
       min(fix_time),
       max(fix_time),
       (array_agg(lon ORDER BY fix_time DESC))[1],
       (array_agg(lat ORDER BY fix_time DESC))[1],
       (array_agg(speed_kmh ORDER BY fix_time DESC))[1],
       (array_agg(course ORDER BY fix_time DESC))[1],
       coalesce(sum(trip_m::double precision), 0),
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 1), 0),
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 2), 0),
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 4), 0),
       count(*) FILTER (WHERE motion = 1),
       sum(speed_kmh::double precision) FILTER (WHERE motion = 1),
       count(*) FILTER (WHERE segment_start = 1),
       count(*) FILTER (WHERE stop_counted)
FROM positions
WHERE fix_time >= $1 AND fix_time < $2
GROUP BY tenant_id, driver_id, bucket
