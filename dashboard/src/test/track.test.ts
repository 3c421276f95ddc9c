import { describe, expect, it } from "vitest";
import { boundsOf, indexAt, positionAtTime, toTrip } from "../lib/track";
import { colorOf, legend, scaleOf } from "../lib/heat";

describe("playback tracks", () => {
  const trip = toTrip("d", { t: [10_000, 20_000, 40_000], lon: [0, 1, 1], lat: [0, 0, 2] }, 10_000);

  it("converts columns to a path with seconds since the origin", () => {
    expect(trip.path).toEqual([
      [0, 0],
      [1, 0],
      [1, 2],
    ]);
    expect(trip.timestamps).toEqual([0, 10, 30]);
  });

  it("finds the fix at or before a time", () => {
    expect(indexAt(trip.timestamps, -1)).toBe(-1);
    expect(indexAt(trip.timestamps, 0)).toBe(0);
    expect(indexAt(trip.timestamps, 9.9)).toBe(0);
    expect(indexAt(trip.timestamps, 10)).toBe(1);
    expect(indexAt(trip.timestamps, 1000)).toBe(2);
    expect(indexAt([], 5)).toBe(-1);
  });

  it("interpolates the position between fixes", () => {
    expect(positionAtTime(trip.path, trip.timestamps, -1)).toBeNull();
    expect(positionAtTime(trip.path, trip.timestamps, 5)).toEqual([0.5, 0]);
    expect(positionAtTime(trip.path, trip.timestamps, 20)).toEqual([1, 1]);
    expect(positionAtTime(trip.path, trip.timestamps, 99)).toEqual([1, 2]);
  });

  it("bounds paths", () => {
    expect(boundsOf([trip.path, [[-1, 5]]])).toEqual([-1, 0, 1, 5]);
    expect(boundsOf([])).toBeNull();
  });
});

describe("heatmap colours", () => {
  it("spans the values, even when they are all equal", () => {
    expect(scaleOf([3, 9, 5])).toEqual({ min: 3, max: 9 });
    expect(scaleOf([4, 4])).toEqual({ min: 4, max: 5 });
    expect(scaleOf([])).toEqual({ min: 0, max: 1 });
  });

  it("maps the ends of the range to the ends of the ramp and clamps outside", () => {
    const s = { min: 0, max: 10 };
    expect(colorOf(0, s, 255)).toEqual([68, 1, 84, 255]);
    expect(colorOf(10, s, 255)).toEqual([253, 231, 37, 255]);
    expect(colorOf(-5, s, 255)).toEqual(colorOf(0, s, 255));
    expect(colorOf(50, s, 255)).toEqual(colorOf(10, s, 255));
  });

  it("builds a legend from min to max", () => {
    const l = legend({ min: 0, max: 100 }, 5);
    expect(l.map((x) => x.value)).toEqual([0, 25, 50, 75, 100]);
    expect(l[4].color).toEqual([253, 231, 37, 255]);
  });
});
