-- What the ETA learned, for analysts: speed by directed road segment and hour of the week
-- (UTC, Monday 00:00 = 0) over the last 8 weeks of edge_speeds_1h, with the traversals behind
-- each figure (the ETA uses a figure from `FLEETPULSE_ETA__MIN_SAMPLES` traversals on; below
-- that it falls back to the cell, the road class, the planning speed: geo.eta, ingest.eta_knowledge).
CREATE VIEW road_speed_profile AS
SELECT s.tenant_id,
       s.network,
       s.source,
       s.target,
       ((floor(extract(epoch FROM s.bucket) / 3600)::bigint - 96) % 168)::integer AS hour_of_week,
       sum(s.traversals)::bigint AS traversals,
       (sum(s.length_m) / nullif(sum(s.travel_s), 0) * 3.6)::double precision AS speed_kmh,
       (sum(s.travel_s) / sum(s.traversals))::double precision AS mean_travel_s
FROM edge_speeds_1h s
WHERE s.bucket >= now() - INTERVAL '8 weeks'
GROUP BY s.tenant_id, s.network, s.source, s.target, 5;
