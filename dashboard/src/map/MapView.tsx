// The base map: MapLibre with a plain offline style, the api's own vector tiles from PostGIS
// (GET /api/tiles/base/style.json: water, landuse, buildings, railways, roads) when a base
// map is loaded, else our road network (GET /api/map/roads); or a configured tile style
// (VITE_MAP_STYLE_URL); deck.gl on top.
import { useEffect, useRef } from "react";
import maplibregl, { type StyleSpecification } from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { MapboxOverlay } from "@deck.gl/mapbox";
import type { Layer } from "@deck.gl/core";
import { TextLayer } from "@deck.gl/layers";
import { api, query } from "../api";
import { useStore } from "../store";
import { hooks } from "../testHooks";
import { labelsFor, type Label, type LabelSource } from "../lib/labels";

export const STYLE_URL: string | undefined = import.meta.env.VITE_MAP_STYLE_URL || undefined;
/** Below this zoom the road network would be too much to ship; the plain style shows. */
export const ROADS_MIN_ZOOM = 11;

const EMPTY = { type: "FeatureCollection", features: [] } as const;

export const OFFLINE_STYLE: StyleSpecification = {
  version: 8,
  sources: { roads: { type: "geojson", data: EMPTY as unknown as GeoJSON.FeatureCollection } },
  layers: [
    { id: "background", type: "background", paint: { "background-color": "#eef1f4" } },
    {
      id: "roads",
      type: "line",
      source: "roads",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: {
        "line-color": "#c3cad3",
        "line-width": [
          "interpolate",
          ["linear"],
          ["zoom"],
          11,
          ["match", ["get", "highway"], ["motorway", "trunk", "primary", "secondary"], 1.5, 0.5],
          16,
          ["match", ["get", "highway"], ["motorway", "trunk", "primary", "secondary"], 8, 3],
        ],
      },
    },
  ],
};

interface BaseStyle extends StyleSpecification {
  metadata?: { "fleetpulse:loaded"?: boolean };
}

/** Tiles from our api need the bearer token (MapLibre fetches them itself). */
function withToken(url: string): maplibregl.RequestParameters {
  const token = useStore.getState().auth?.accessToken;
  if (token && url.includes("/api/tiles/")) {
    return { url, headers: { Authorization: `Bearer ${token}` } };
  }
  return { url };
}

/** Add the api's base-map layers under our own; return whether a base map is loaded. */
async function addBaseMap(map: maplibregl.Map): Promise<boolean> {
  const style = await api<BaseStyle>("/api/tiles/base/style.json");
  if (!style.metadata?.["fleetpulse:loaded"]) return false;
  for (const [id, source] of Object.entries(style.sources)) map.addSource(id, source);
  for (const layer of style.layers) {
    if (layer.type === "background") continue;
    map.addLayer(layer, "roads");
    hooks.baseLayers += 1;
  }
  map.setLayoutProperty("roads", "visibility", "none"); // the base map draws every road
  return true;
}

/** The base map's labels in view: street and place names from the loaded vector tiles. */
function baseLabels(map: maplibregl.Map): Label[] {
  const sources: LabelSource[] = [];
  for (const layer of ["roads", "places"] as const) {
    for (const f of map.querySourceFeatures("base", { sourceLayer: layer })) {
      const g = f.geometry;
      const lines =
        g.type === "LineString"
          ? [g.coordinates as [number, number][]]
          : g.type === "MultiLineString"
            ? (g.coordinates as [number, number][][])
            : g.type === "Point"
              ? [[g.coordinates as [number, number]]]
              : [];
      const props = f.properties as { kind?: string; name?: string | null };
      sources.push({ layer, kind: props.kind ?? "", name: props.name, lines });
    }
  }
  return labelsFor(sources, map.getZoom());
}

const PLACE_KINDS = new Set(["city", "suburb", "neighbourhood", "quarter"]);

function labelLayer(labels: Label[]): TextLayer<Label> {
  return new TextLayer<Label>({
    id: "base-labels",
    data: labels,
    getPosition: (d) => d.position,
    getText: (d) => d.text,
    getAngle: (d) => d.angle,
    getSize: (d) => d.size,
    sizeUnits: "pixels",
    getColor: (d) => (PLACE_KINDS.has(d.kind) ? [90, 70, 110] : [50, 50, 50]),
    fontFamily: "system-ui, 'DejaVu Sans', sans-serif",
    characterSet: "auto",
    fontSettings: { sdf: true },
    outlineWidth: 3,
    outlineColor: [255, 255, 255, 230],
  });
}

export interface MapHandle {
  map: maplibregl.Map;
  overlay: MapboxOverlay;
}

interface Props {
  /** Layers to draw; pages that animate leave this out and drive the overlay themselves. */
  layers?: Layer[];
  center?: [number, number];
  zoom?: number;
  onReady?: (h: MapHandle) => void;
  testId?: string;
}

export function MapView({ layers, center = [24.94, 60.17], zoom = 12, onReady, testId }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const handle = useRef<MapHandle | null>(null);

  useEffect(() => {
    if (!box.current) return;
    const map = new maplibregl.Map({
      container: box.current,
      style: STYLE_URL ?? OFFLINE_STYLE,
      center,
      zoom,
      attributionControl: false,
      fadeDuration: 0,
      transformRequest: withToken,
    });
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    // Labels under the page's own layers (markers stay on top).
    const labelsOverlay = new MapboxOverlay({ interleaved: false, layers: [] });
    map.addControl(labelsOverlay);
    const overlay = new MapboxOverlay({ interleaved: false, layers: [] });
    map.addControl(overlay);
    handle.current = { map, overlay };
    hooks.map = map;
    let controller: AbortController | null = null;
    // The road network's GeoJSON waits until we know whether the base map draws the roads.
    let baseMap: boolean | null = STYLE_URL ? false : null;
    map.on("sourcedata", (e) => {
      if (e.sourceId === "base" && e.tile) hooks.baseTiles += 1;
    });
    const loadRoads = () => {
      if (STYLE_URL || baseMap !== false || map.getZoom() < ROADS_MIN_ZOOM) return;
      const b = map.getBounds();
      const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
        .map((v) => v.toFixed(5))
        .join(",");
      controller?.abort();
      controller = new AbortController();
      api<GeoJSON.FeatureCollection>(`/api/map/roads?${query({ bbox })}`, {
        signal: controller.signal,
      })
        .then((fc) => {
          (map.getSource("roads") as maplibregl.GeoJSONSource | undefined)?.setData(fc);
          hooks.roads = fc.features.length;
        })
        .catch(() => undefined); // no roads (box too wide, table missing): plain background
    };
    let labelled = "";
    map.on("idle", () => {
      if (!baseMap) return;
      const c = map.getCenter();
      const view = `${map.getZoom().toFixed(2)},${c.lng.toFixed(5)},${c.lat.toFixed(5)}`;
      const key = `${view},${hooks.baseTiles}`;
      if (key === labelled) return; // idle also follows our own redraws
      labelled = key;
      const labels = baseLabels(map);
      labelsOverlay.setProps({ layers: [labelLayer(labels)] });
      hooks.labels = labels.map((l) => l.text);
    });
    map.on("moveend", loadRoads);
    map.on("load", () => {
      if (STYLE_URL) return;
      addBaseMap(map)
        .then((loaded) => {
          baseMap = loaded;
        })
        .catch(() => {
          baseMap = false; // no base map: the road network below
        })
        .finally(loadRoads);
    });
    onReady?.(handle.current);
    return () => {
      controller?.abort();
      handle.current = null;
      if (hooks.map === map) hooks.map = null;
      map.remove();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    if (layers !== undefined) handle.current?.overlay.setProps({ layers });
  }, [layers]);

  return <div ref={box} className="map" data-testid={testId ?? "map"} />;
}

/** Fit the map to [minLon, minLat, maxLon, maxLat] with some padding. */
export function fitTo(h: MapHandle | null, b: [number, number, number, number] | null): void {
  if (!h || !b) return;
  const pad = 0.002;
  h.map.fitBounds(
    [
      [b[0] - pad, b[1] - pad],
      [b[2] + pad, b[3] + pad],
    ],
    { padding: 40, duration: 0, maxZoom: 16 },
  );
}
