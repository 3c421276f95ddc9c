// The view to fit: where most of the points are, so that a few far-away ones (a seeded demo
// driver in another city, a device with a wrong fix) do not zoom the map out to the world.

/** The points of the densest area: points are counted per `cellDeg` grid cell and the
 * cell with the most, with its eight neighbours, is kept. All points when they already lie
 * within one such block. */
export function mainCluster(points: [number, number][], cellDeg = 0.5): [number, number][] {
  if (points.length < 2) return points;
  const counts = new Map<string, number>();
  const cellOf = (p: [number, number]) => [Math.floor(p[0] / cellDeg), Math.floor(p[1] / cellDeg)];
  let best: number[] = [0, 0];
  let bestCount = 0;
  for (const p of points) {
    const c = cellOf(p);
    const key = `${c[0]},${c[1]}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    if (n > bestCount) {
      bestCount = n;
      best = c;
    }
  }
  return points.filter((p) => {
    const c = cellOf(p);
    return Math.abs(c[0] - best[0]) <= 1 && Math.abs(c[1] - best[1]) <= 1;
  });
}
