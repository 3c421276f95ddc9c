-- Learned travel times (issue 18) on plain PostgreSQL: the traversals table and its hourly
-- rollup, refreshed incrementally by analytics.refresh with the SELECT of the .timescale
-- variant's continuous aggregate (same relation names and columns).
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
CREATE INDEX edge_traversals_time ON edge_traversals (entered_at);
CREATE INDEX edge_traversals_edge ON edge_traversals (network, source, target, entered_at DESC);

CREATE TABLE edge_speeds_1h (
    tenant_id   text NOT NULL,
    network     text NOT NULL,
    source      bigint NOT NULL,
    target      bigint NOT NULL,
    bucket      timestamptz NOT NULL,
    traversals  bigint NOT NULL,
    length_m    double precision NOT NULL,
    travel_s    double precision NOT NULL,
    PRIMARY KEY (bucket, tenant_id, network, source, target)
);
