// Playback tracks: the API's columnar arrays (t, lon, lat, speed, heading) as paths with
// timestamps for deck.gl's TripsLayer, and the position at a given time.

export interface Columns {
  t: number[]; // epoch ms
  lon: number[];
  lat: number[];
  speed?: (number | null)[];
  heading?: (number | null)[];
}

export interface Trip {
  id: string;
  path: [number, number][];
  /** Seconds since the window start: small numbers keep float32 GPU precision. */
  timestamps: number[];
}

export function toTrip(id: string, c: Columns, originMs: number): Trip {
  const n = Math.min(c.t.length, c.lon.length, c.lat.length);
  const path: [number, number][] = [];
  const timestamps: number[] = [];
  for (let i = 0; i < n; i++) {
    path.push([c.lon[i], c.lat[i]]);
    timestamps.push((c.t[i] - originMs) / 1000);
  }
  return { id, path, timestamps };
}

/** Index of the last fix at or before t (-1 before the first). */
export function indexAt(times: number[], t: number): number {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || t < times[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The position at time t (same unit as the timestamps), interpolated between fixes; null
 * before the first fix; the last fix after the end.
 */
export function positionAtTime(
  path: [number, number][],
  timestamps: number[],
  t: number,
): [number, number] | null {
  const i = indexAt(timestamps, t);
  if (i < 0) return null;
  if (i >= path.length - 1) return path[path.length - 1];
  const t0 = timestamps[i];
  const t1 = timestamps[i + 1];
  const f = t1 > t0 ? (t - t0) / (t1 - t0) : 0;
  const [x0, y0] = path[i];
  const [x1, y1] = path[i + 1];
  return [x0 + (x1 - x0) * f, y0 + (y1 - y0) * f];
}

/** [minLon, minLat, maxLon, maxLat] of some paths, or null when they are empty. */
export function boundsOf(paths: [number, number][][]): [number, number, number, number] | null {
  let b: [number, number, number, number] | null = null;
  for (const path of paths) {
    for (const [x, y] of path) {
      if (b === null) b = [x, y, x, y];
      else b = [Math.min(b[0], x), Math.min(b[1], y), Math.max(b[2], x), Math.max(b[3], y)];
    }
  }
  return b;
}
