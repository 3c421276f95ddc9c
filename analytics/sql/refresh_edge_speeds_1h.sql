-- Re-materialise edge_speeds_1h for [$1, $2) on plain PostgreSQL: the SELECT of the
-- continuous aggregate in 0021_edge_speeds.timescale.sql.
INSERT INTO edge_speeds_1h (tenant_id, network, source, target, bucket, traversals, length_m,
    travel_s)
SELECT tenant_id,
       network,
       source,
       target,
       date_bin(INTERVAL '1 hour', entered_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*),
       sum(length_m::double precision),
       sum(travel_s::double precision)
FROM edge_traversals
WHERE entered_at >= $1 AND entered_at < $2
GROUP BY tenant_id, network, source, target, bucket
