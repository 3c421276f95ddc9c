-- Playback, heatmaps and daily statistics as TimescaleDB continuous aggregates over the
-- per-fix labels of 0016 (same relation names and columns as the .plain variant):
--   positions  ->  positions_1m (per driver-minute)  ->  driver_daily_motion (per driver-day)
--   positions  ->  cells_1h (per tenant-hour-H3 res 9)
-- Materialized only (no real-time union with raw rows): results equal the plain backend's,
-- and query cost does not depend on how far behind the refresh is. Refresh policies are
-- added and kept in step with the settings by analytics.refresh.sync_policies.
-- (a database migrated before policies moved out of 0006 has one on the old view)
SELECT remove_continuous_aggregate_policy('positions_1m', if_exists => true);
DROP MATERIALIZED VIEW positions_1m;
DROP TABLE cells_1h;
DROP TABLE driver_daily_stats;

CREATE MATERIALIZED VIEW positions_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT tenant_id,
       driver_id,
       time_bucket(INTERVAL '1 minute', fix_time) AS bucket,
       count(*) AS positions,
       avg(speed_kmh)::double precision AS mean_speed_kmh,
       max(speed_kmh) AS max_speed_kmh,
       min(fix_time) AS first_fix_time,
       max(fix_time) AS last_fix_time,
       last(lon, fix_time) AS last_lon,
       last(lat, fix_time) AS last_lat,
       last(speed_kmh, fix_time) AS last_speed_kmh,
       last(course, fix_time) AS last_course,
       coalesce(sum(trip_m::double precision), 0) AS distance_m,
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 1), 0) AS moving_s,
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 2), 0) AS idle_s,
       coalesce(sum(step_s::double precision) FILTER (WHERE motion = 4), 0) AS stopped_s,
       count(*) FILTER (WHERE motion = 1) AS moving_fixes,
       sum(speed_kmh::double precision) FILTER (WHERE motion = 1) AS moving_speed_sum,
       count(*) FILTER (WHERE segment_start = 1) AS trips,
       count(*) FILTER (WHERE stop_counted) AS stops
FROM positions
GROUP BY tenant_id, driver_id, time_bucket(INTERVAL '1 minute', fix_time)
WITH NO DATA;

CREATE MATERIALIZED VIEW driver_daily_motion
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT tenant_id,
       driver_id,
       time_bucket(INTERVAL '1 day', bucket) AS bucket,
       sum(positions)::bigint AS positions,
       min(first_fix_time) AS first_fix,
       max(last_fix_time) AS last_fix,
       sum(distance_m) AS distance_m,
       sum(moving_s) AS moving_s,
       sum(idle_s) AS idle_s,
       sum(stopped_s) AS stopped_s,
       sum(moving_speed_sum) / nullif(sum(moving_fixes), 0) AS mean_speed_kmh,
       max(max_speed_kmh)::double precision AS max_speed_kmh,
       sum(trips)::integer AS trips,
       sum(stops)::integer AS stops
FROM positions_1m
GROUP BY tenant_id, driver_id, time_bucket(INTERVAL '1 day', bucket)
WITH NO DATA;

-- dwell_s: each fix dwells the time since the driver's previous fix when at most 300 s
-- (longer is unknown time, the device off), in the fix's cell and hour. driver_ids keeps the
-- distinct drivers so that counts over several hours or coarser cells stay exact.
CREATE MATERIALIZED VIEW cells_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT tenant_id,
       time_bucket(INTERVAL '1 hour', fix_time) AS bucket,
       fleetpulse_h3_parent(h3_cell, 9) AS h3_cell,
       count(*) AS positions,
       count(DISTINCT driver_id) AS drivers,
       array_agg(DISTINCT driver_id) AS driver_ids,
       avg(speed_kmh)::double precision AS mean_speed_kmh,
       coalesce(sum(step_s::double precision) FILTER (WHERE step_s <= 300), 0) AS dwell_s
FROM positions
GROUP BY tenant_id, time_bucket(INTERVAL '1 hour', fix_time), fleetpulse_h3_parent(h3_cell, 9)
WITH NO DATA;

-- driver_daily_stats, the view over driver_daily_motion, is the same on both: 0020.

-- Rows written before 0016 have no labels; re-materialise everything from the start.
DELETE FROM analytics_watermarks;
