-- Learned travel times (issue 18): the road segments vehicles drove, whole, and when, from
-- map matching the history (analytics.matching, geo.matching), summed per segment and hour
-- as a continuous aggregate. The ETA reads the hour-of-week profile over the last weeks of it
-- (ingest.eta_knowledge). Same relation names and columns as the .plain variant.
CREATE TABLE edge_traversals (
    tenant_id   text NOT NULL,
    driver_id   uuid NOT NULL,
    network     text NOT NULL,
    source      bigint NOT NULL,            -- road_edges (network, source, target)
    target      bigint NOT NULL,
    entered_at  timestamptz NOT NULL,
    travel_s    real NOT NULL CHECK (travel_s > 0),
    length_m    real NOT NULL CHECK (length_m > 0),
    UNIQUE (driver_id, network, source, target, entered_at)
);
SELECT create_hypertable('edge_traversals', by_range('entered_at', INTERVAL '7 days'));
CREATE INDEX edge_traversals_edge ON edge_traversals (network, source, target, entered_at DESC);

CREATE MATERIALIZED VIEW edge_speeds_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT tenant_id,
       network,
       source,
       target,
       time_bucket(INTERVAL '1 hour', entered_at) AS bucket,
       count(*) AS traversals,
       sum(length_m::double precision) AS length_m,
       sum(travel_s::double precision) AS travel_s
FROM edge_traversals
GROUP BY tenant_id, network, source, target, time_bucket(INTERVAL '1 hour', entered_at)
WITH NO DATA;
