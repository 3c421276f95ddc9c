// Labels for the base map, drawn by deck.gl's TextLayer with the browser's fonts (MapLibre
// symbol layers would need glyph files from the internet or a build step): street names
// along the longest visible piece of each street, place names at their points.

export interface LabelSource {
  layer: "roads" | "places";
  kind: string;
  name: string | null | undefined;
  /** Lines as [lon, lat] sequences (several for a MultiLineString); a point as one pair. */
  lines: [number, number][][];
}

export interface Label {
  text: string;
  position: [number, number];
  /** Degrees counter-clockwise (deck.gl's getAngle), kept within -90..90 so text reads. */
  angle: number;
  size: number;
  kind: string;
}

const MAJOR = new Set(["motorway", "trunk", "primary", "secondary"]);
const MINOR_WAYS = new Set(["footway", "path", "steps", "cycleway", "corridor", "trail", "track"]);
const PLACE_SIZE: Record<string, number> = { city: 18, suburb: 15, neighbourhood: 14, quarter: 14 };

/** Length in metres-ish (equirectangular) of a [lon, lat] line. */
export function lineLength(line: [number, number][]): number {
  let total = 0;
  for (let i = 1; i < line.length; i++) total += segment(line[i - 1], line[i]);
  return total;
}

function segment(a: [number, number], b: [number, number]): number {
  const k = Math.cos(((a[1] + b[1]) / 2) * (Math.PI / 180));
  return Math.hypot((b[0] - a[0]) * k, b[1] - a[1]) * 111_320;
}

/** The point halfway along a line and the line's direction there (degrees, -90..90). */
export function midpoint(line: [number, number][]): { position: [number, number]; angle: number } {
  const half = lineLength(line) / 2;
  let walked = 0;
  for (let i = 1; i < line.length; i++) {
    const a = line[i - 1];
    const b = line[i];
    const step = segment(a, b);
    if (walked + step >= half && step > 0) {
      const f = (half - walked) / step;
      const k = Math.cos(a[1] * (Math.PI / 180));
      let angle = (Math.atan2(b[1] - a[1], (b[0] - a[0]) * k) * 180) / Math.PI;
      if (angle > 90) angle -= 180;
      if (angle < -90) angle += 180;
      return { position: [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f], angle };
    }
    walked += step;
  }
  return { position: line[0], angle: 0 };
}

/** Street labels from zoom 14 (major) / 15 (the rest; not paths), one per name (its longest
 * visible piece, at least `minLengthM`), and place labels; both without duplicates. */
export function labelsFor(sources: LabelSource[], zoom: number, minLengthM = 60): Label[] {
  const streets = new Map<string, { line: [number, number][]; length: number; kind: string }>();
  const places = new Map<string, Label>();
  for (const s of sources) {
    if (!s.name) continue;
    if (s.layer === "places") {
      const [point] = s.lines[0] ?? [];
      if (point && !places.has(s.name)) {
        places.set(s.name, {
          text: s.name,
          position: point,
          angle: 0,
          size: PLACE_SIZE[s.kind] ?? 12,
          kind: s.kind,
        });
      }
      continue;
    }
    if (MINOR_WAYS.has(s.kind)) continue;
    if (zoom < (MAJOR.has(s.kind) ? 14 : 15)) continue;
    for (const line of s.lines) {
      const length = lineLength(line);
      const best = streets.get(s.name);
      if (length >= minLengthM && (!best || length > best.length)) {
        streets.set(s.name, { line, length, kind: s.kind });
      }
    }
  }
  const labels = [...places.values()];
  for (const [name, best] of streets) {
    const { position, angle } = midpoint(best.line);
    labels.push({ text: name, position, angle, size: MAJOR.has(best.kind) ? 13 : 11, kind: best.kind });
  }
  return labels;
}
