// Heatmap colours: a perceptual ramp (viridis stops) over the value range, and its legend.

export type Rgba = [number, number, number, number];

const STOPS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

export interface Scale {
  min: number;
  max: number;
}

export function scaleOf(values: number[]): Scale {
  if (values.length === 0) return { min: 0, max: 1 };
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max: max > min ? max : min + 1 };
}

/** Colour of a value on the ramp; values outside the scale take the end colours. */
export function colorOf(value: number, s: Scale, alpha = 200): Rgba {
  const f = Math.min(1, Math.max(0, (value - s.min) / (s.max - s.min)));
  const x = f * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const g = x - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [
    Math.round(a[0] + (b[0] - a[0]) * g),
    Math.round(a[1] + (b[1] - a[1]) * g),
    Math.round(a[2] + (b[2] - a[2]) * g),
    alpha,
  ];
}

/** n legend entries from min to max, each with its colour. */
export function legend(s: Scale, n = 5): { value: number; color: Rgba }[] {
  return Array.from({ length: n }, (_, k) => {
    const value = s.min + ((s.max - s.min) * k) / (n - 1);
    return { value, color: colorOf(value, s, 255) };
  });
}

export const METRICS = {
  positions: "fixes",
  dwell: "dwell (s)",
  speed: "mean speed (km/h)",
  drivers: "distinct drivers",
} as const;

export type Metric = keyof typeof METRICS;
