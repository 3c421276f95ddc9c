-- The simulator's road network (OpenStreetMap drivable ways), for map display and, later,
-- routing in the database (pgRouting reads source/target/cost/reverse_cost).
-- Loaded by `fleetpulse simulate --load-roads` (simulator/roads.py); one row per directed
-- street segment, keyed by the network it came from and its end nodes.
CREATE TABLE road_edges (
    network         text NOT NULL,
    source          bigint NOT NULL,            -- OSM node id the segment leaves
    target          bigint NOT NULL,            -- OSM node id it reaches
    osm_way_id      bigint NOT NULL,
    highway         text NOT NULL,              -- OSM road class (primary, residential, ...)
    name            text,
    length_m        double precision NOT NULL CHECK (length_m > 0),
    speed_kmh       double precision NOT NULL CHECK (speed_kmh > 0),
    cost_s          double precision NOT NULL CHECK (cost_s > 0),  -- free-flow driving time
    geom            geometry(LineString, 4326) NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (network, source, target)
);
CREATE INDEX road_edges_geom ON road_edges USING gist (geom);
CREATE INDEX road_edges_class ON road_edges (network, highway);
