-- One Mapbox Vector Tile of the base map (basemap_features, 0018): a layer per
-- basemap_features.layer, with kind and name; layers, road classes and place kinds filtered
-- by zoom by the caller's parameters; geometries simplified to half a tile pixel.
-- $1 z, $2 x, $3 y, $4 simplification tolerance (EPSG:3857 metres), $5 layers drawn,
-- $6 road classes drawn (NULL: all), $7 place kinds left out.
WITH bounds AS (
    SELECT ST_TileEnvelope($1, $2, $3) AS env
), features AS (
    SELECT f.layer,
           f.kind,
           f.name,
           ST_AsMVTGeom(ST_Simplify(ST_Transform(f.geom, 3857), $4), b.env, 4096, 64, true)
               AS geom
    FROM basemap_features f, bounds b
    WHERE f.geom && ST_Transform(b.env, 4326)
      AND f.layer = ANY ($5::text[])
      AND (f.layer <> 'roads' OR $6::text[] IS NULL OR f.kind = ANY ($6::text[]))
      AND (f.layer <> 'places' OR f.kind <> ALL ($7::text[]))
)
SELECT layer, ST_AsMVT(t, layer, 4096, 'geom')
FROM (SELECT layer, kind, name, geom FROM features WHERE geom IS NOT NULL) t
GROUP BY layer
ORDER BY layer;
