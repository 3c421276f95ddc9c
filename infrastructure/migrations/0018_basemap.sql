-- Base-map features from an OpenStreetMap extract (the vector tiles' layer set "base"):
-- water, landuse (parks, grass, ...), buildings, railways, roads of every class (footways
-- too) and place labels. Loaded by `fleetpulse basemap` (infrastructure/basemap.py); one row
-- per OSM element and layer, keyed by the extract it came from.
CREATE TABLE basemap_features (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,                  -- the extract ('helsinki')
    layer       text NOT NULL
                CHECK (layer IN ('water', 'landuse', 'buildings', 'railways', 'roads', 'places')),
    kind        text NOT NULL,                  -- the OSM class: park, primary, tram, suburb, ...
    name        text,
    osm_id      bigint NOT NULL,
    geom        geometry(Geometry, 4326) NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX basemap_features_geom ON basemap_features USING gist (geom);
CREATE INDEX basemap_features_source_layer ON basemap_features (source, layer);
