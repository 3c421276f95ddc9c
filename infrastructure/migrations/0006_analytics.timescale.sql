-- Analytics on TimescaleDB: positions_1m is a continuous aggregate; same relation names and
-- columns as 0006_analytics.plain.sql. Replaced by 0017 (the movement aggregates).

CREATE MATERIALIZED VIEW positions_1m WITH (timescaledb.continuous) AS
SELECT tenant_id,
       driver_id,
       time_bucket(INTERVAL '1 minute', fix_time) AS bucket,
       count(*) AS positions,
       avg(speed_kmh)::double precision AS mean_speed_kmh,
       max(speed_kmh) AS max_speed_kmh,
       max(fix_time) AS last_fix_time,
       last(lon, fix_time) AS last_lon,
       last(lat, fix_time) AS last_lat,
       last(speed_kmh, fix_time) AS last_speed_kmh,
       last(course, fix_time) AS last_course
FROM positions
GROUP BY tenant_id, driver_id, time_bucket(INTERVAL '1 minute', fix_time)
WITH NO DATA;
-- No CREATE INDEX: a continuous aggregate gets a composite index per GROUP BY column with
-- the bucket, i.e. (tenant_id, bucket) and (driver_id, bucket), the two the queries use.
-- Its refresh policy is added from the settings after migrating (sync_policies).

-- Retention is a policy (sync_policies); keep the function the maintenance loop calls.
CREATE FUNCTION fleetpulse_drop_position_partitions(before date)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

-- ---------------------------------------------------------------------------------------
-- Shared by both backends (identical in 0006_analytics.plain.sql and .timescale.sql):
-- rollups whose definition needs window functions (dwell, jitter-filtered distance), which
-- TimescaleDB continuous aggregates cannot express, so the analytics runner refreshes them.
-- ---------------------------------------------------------------------------------------

-- H3 parent of a 64-bit cell by bit arithmetic (no h3 extension in the database): write the
-- resolution field (bits 52-55) and set every finer 3-bit digit to 7. Valid for res <= the
-- cell's own resolution.
CREATE FUNCTION fleetpulse_h3_parent(cell bigint, res integer)
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (cell & ~(15::bigint << 52)) | (res::bigint << 52)
           | ((1::bigint << (3 * (15 - res))) - 1)
$$;

-- Per tenant, per hour, per H3 res-9 cell. dwell_s: for every fix, the time to the same
-- driver's next fix, when at most 300 s, is spent in the fix's cell. driver_ids keeps the
-- distinct drivers so that counts over several hours or coarser cells stay exact.
CREATE TABLE cells_1h (
    tenant_id       text NOT NULL,
    bucket          timestamptz NOT NULL,
    h3_cell         bigint NOT NULL,
    positions       bigint NOT NULL,
    drivers         bigint NOT NULL,
    driver_ids      uuid[] NOT NULL,
    mean_speed_kmh  double precision,
    dwell_s         double precision NOT NULL,
    PRIMARY KEY (tenant_id, bucket, h3_cell)
);

-- Per driver per UTC day, computed by analytics.refresh with geo.movement.
CREATE TABLE driver_daily_stats (
    tenant_id           text NOT NULL,
    driver_id           uuid NOT NULL,
    day                 date NOT NULL,
    positions           bigint NOT NULL,
    first_fix           timestamptz NOT NULL,
    last_fix            timestamptz NOT NULL,
    distance_m          double precision NOT NULL,
    moving_s            double precision NOT NULL,
    idle_s              double precision NOT NULL,
    stopped_s           double precision NOT NULL,
    mean_speed_kmh      double precision,
    max_speed_kmh       double precision,
    trips               integer NOT NULL,
    stops               integer NOT NULL,
    visits_planned      integer NOT NULL,
    visits_completed    integer NOT NULL,
    on_time_share       double precision,
    PRIMARY KEY (driver_id, day)
);
CREATE INDEX driver_daily_stats_tenant_day ON driver_daily_stats (tenant_id, day);

-- How far each rollup is materialised; the runner re-does [watermark - late window, now).
CREATE TABLE analytics_watermarks (
    name            text PRIMARY KEY,
    watermark       timestamptz NOT NULL,
    refreshed_at    timestamptz NOT NULL DEFAULT now()
);

-- Playback and exports read one driver's window: (driver_id, fix_time) is the primary key.
-- Heatmaps and fleet playback read a tenant's window: positions_tenant_time (0002).
