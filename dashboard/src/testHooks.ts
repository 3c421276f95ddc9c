// What the browser tests read (window.__fleetpulse): the app's own figures, not pixels.
import type maplibregl from "maplibre-gl";
import { useStore } from "./store";

export interface TestHooks {
  state: typeof useStore.getState;
  /** Live map: drivers drawn on the last frame. */
  liveMarkers: number;
  /** Live map: where each driver was drawn on the last frame (filled only when trace is on). */
  trace: boolean;
  livePositions: Record<string, [number, number]>;
  /** Live map: points of the selected driver's route path drawn. */
  routePoints: number;
  /** Playback: the position of the first track's head, and the clock's track time. */
  playbackHead: [number, number] | null;
  playbackTime: number | null;
  playbackTracks: number;
  /** Heatmap: hexagons drawn. */
  hexagons: number;
  /** Base map: road features loaded from /api/map/roads for the current view. */
  roads: number;
  /** Base map: layers added from /api/tiles/base/style.json, vector tiles loaded. */
  baseLayers: number;
  baseTiles: number;
  /** Base map: the label texts drawn for the current view. */
  labels: string[];
  /** The map of the page shown (the test moves it to look at the base map). */
  map: maplibregl.Map | null;
  /** deck.gl frames rendered per page (proves WebGL draws). */
  frames: number;
}

export const hooks: TestHooks = {
  state: useStore.getState,
  liveMarkers: 0,
  trace: false,
  livePositions: {},
  routePoints: 0,
  playbackHead: null,
  playbackTime: null,
  playbackTracks: 0,
  hexagons: 0,
  roads: 0,
  baseLayers: 0,
  baseTiles: 0,
  map: null,
  labels: [],
  frames: 0,
};

(globalThis as unknown as { __fleetpulse: TestHooks }).__fleetpulse = hooks;
