-- One Mapbox Vector Tile of the road network: layer "roads" (highway class, name), each
-- directed pair of edges drawn once, classes filtered and lines simplified by zoom.
-- $1 z, $2 x, $3 y, $4 simplification tolerance (EPSG:3857 metres), $5 highway classes
-- (NULL: all).
WITH bounds AS (
    SELECT ST_TileEnvelope($1, $2, $3) AS env
), edges AS (
    SELECT DISTINCT ON (osm_way_id, least(source, target), greatest(source, target))
           highway, name, geom
    FROM road_edges, bounds
    WHERE geom && ST_Transform(bounds.env, 4326)
      AND ($5::text[] IS NULL OR highway = ANY ($5::text[]))
    ORDER BY osm_way_id, least(source, target), greatest(source, target)
), mvt AS (
    SELECT ST_AsMVTGeom(ST_Simplify(ST_Transform(e.geom, 3857), $4), b.env, 4096, 64, true)
               AS geom,
           e.highway,
           e.name
    FROM edges e, bounds b
)
SELECT ST_AsMVT(mvt, 'roads', 4096, 'geom') FROM mvt WHERE geom IS NOT NULL;
