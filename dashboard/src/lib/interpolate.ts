// Smooth movement between live frames: a marker glides from where it is drawn now to the
// newest fix over (about) the time between the two fixes, so it never jumps or runs ahead.

export interface Fix {
  lon: number;
  lat: number;
  fixTimeMs: number;
  course?: number | null;
}

export interface Motion {
  fromLon: number;
  fromLat: number;
  toLon: number;
  toLat: number;
  /** Local clock (ms) when the glide started. */
  start: number;
  /** Glide length in ms; 0 draws the target at once. */
  duration: number;
  /** Fix time of the target, to drop late frames. */
  fixTimeMs: number;
  course: number | null;
}

export const MIN_GLIDE_MS = 250;
export const MAX_GLIDE_MS = 5_000;
/** Farther than this between two frames is a teleport (tunnel, restart): no glide. */
export const SNAP_DISTANCE_M = 2_000;

const EARTH_RADIUS_M = 6_371_008.8;

/** Great-circle distance in metres between two lon/lat points. */
export function distanceM(lon1: number, lat1: number, lon2: number, lat2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a =
    Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

export function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/** Where the motion draws its marker at local time nowMs, as [lon, lat]. */
export function positionAt(m: Motion, nowMs: number): [number, number] {
  const f = m.duration <= 0 ? 1 : clamp((nowMs - m.start) / m.duration, 0, 1);
  return [m.fromLon + (m.toLon - m.fromLon) * f, m.fromLat + (m.toLat - m.fromLat) * f];
}

/** True while the marker is still gliding (the map must keep redrawing). */
export function isMoving(m: Motion, nowMs: number): boolean {
  return m.duration > 0 && nowMs < m.start + m.duration;
}

/**
 * The motion after a new fix arrives at local time nowMs. A fix not newer than the current
 * target is ignored (returns prev unchanged): live state never moves backwards.
 */
export function nextMotion(prev: Motion | undefined, fix: Fix, nowMs: number): Motion {
  if (prev === undefined) {
    return {
      fromLon: fix.lon,
      fromLat: fix.lat,
      toLon: fix.lon,
      toLat: fix.lat,
      start: nowMs,
      duration: 0,
      fixTimeMs: fix.fixTimeMs,
      course: fix.course ?? null,
    };
  }
  if (fix.fixTimeMs <= prev.fixTimeMs) return prev;
  const [lon, lat] = positionAt(prev, nowMs);
  const far = distanceM(lon, lat, fix.lon, fix.lat) > SNAP_DISTANCE_M;
  return {
    fromLon: far ? fix.lon : lon,
    fromLat: far ? fix.lat : lat,
    toLon: fix.lon,
    toLat: fix.lat,
    start: nowMs,
    duration: far ? 0 : clamp(fix.fixTimeMs - prev.fixTimeMs, MIN_GLIDE_MS, MAX_GLIDE_MS),
    fixTimeMs: fix.fixTimeMs,
    course: fix.course ?? prev.course,
  };
}
