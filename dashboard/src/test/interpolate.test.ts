import { describe, expect, it } from "vitest";
import { MAX_GLIDE_MS, MIN_GLIDE_MS, isMoving, nextMotion, positionAt, distanceM } from "../lib/interpolate";

const fix = (lon: number, lat: number, fixTimeMs: number) => ({ lon, lat, fixTimeMs });

describe("interpolation between live frames", () => {
  it("draws the first fix where it is, without gliding", () => {
    const m = nextMotion(undefined, fix(24.9, 60.1, 1000), 0);
    expect(positionAt(m, 0)).toEqual([24.9, 60.1]);
    expect(isMoving(m, 0)).toBe(false);
  });

  it("glides to the next fix over the time between the fixes", () => {
    const a = nextMotion(undefined, fix(24.9, 60.1, 0), 0);
    const b = nextMotion(a, fix(24.902, 60.1, 2000), 10_000);
    expect(b.duration).toBe(2000);
    expect(positionAt(b, 10_000)).toEqual([24.9, 60.1]);
    const [lonHalf] = positionAt(b, 11_000);
    expect(lonHalf).toBeCloseTo(24.901, 9);
    expect(positionAt(b, 12_000)).toEqual([24.902, 60.1]);
    expect(positionAt(b, 99_000)).toEqual([24.902, 60.1]); // never runs ahead
    expect(isMoving(b, 11_000)).toBe(true);
    expect(isMoving(b, 12_001)).toBe(false);
  });

  it("starts a new glide from where the marker is drawn, not from the old target", () => {
    const a = nextMotion(undefined, fix(0, 0, 0), 0);
    const b = nextMotion(a, fix(0.001, 0, 1000), 0);
    const c = nextMotion(b, fix(0.002, 0, 2000), 500); // halfway through b
    expect(c.fromLon).toBeCloseTo(0.0005, 12);
    expect(c.toLon).toBe(0.002);
  });

  it("ignores late and repeated frames", () => {
    const a = nextMotion(undefined, fix(0, 0, 5000), 0);
    expect(nextMotion(a, fix(1, 1, 4000), 10)).toBe(a);
    expect(nextMotion(a, fix(1, 1, 5000), 10)).toBe(a);
  });

  it("clamps the glide length", () => {
    const a = nextMotion(undefined, fix(0, 0, 0), 0);
    expect(nextMotion(a, fix(0.0001, 0, 1), 0).duration).toBe(MIN_GLIDE_MS);
    expect(nextMotion(a, fix(0.0001, 0, 60_000), 0).duration).toBe(MAX_GLIDE_MS);
  });

  it("snaps across a jump too long to be driving", () => {
    const a = nextMotion(undefined, fix(24.9, 60.1, 0), 0);
    const b = nextMotion(a, fix(25.2, 60.3, 1000), 0);
    expect(b.duration).toBe(0);
    expect(positionAt(b, 0)).toEqual([25.2, 60.3]);
  });

  it("measures distances on the sphere", () => {
    // One degree of latitude is about 111.2 km.
    expect(distanceM(0, 0, 0, 1)).toBeGreaterThan(111_000);
    expect(distanceM(0, 0, 0, 1)).toBeLessThan(111_400);
  });
});
