import { describe, expect, it } from "vitest";
import {
  formatAge,
  formatClock,
  stopEta,
  formatCount,
  formatDistance,
  formatDuration,
  formatEta,
  formatSpeed,
} from "../lib/format";

describe("formatting", () => {
  it("durations", () => {
    expect(formatDuration(44.6)).toBe("45 s");
    expect(formatDuration(240)).toBe("4 min");
    expect(formatDuration(3900)).toBe("1 h 05 min");
    expect(formatDuration(null)).toBe("—");
    expect(formatDuration(-1)).toBe("—");
    expect(formatDuration(Number.NaN)).toBe("—");
  });

  it("speeds and distances", () => {
    expect(formatSpeed(41.6)).toBe("42 km/h");
    expect(formatSpeed(-0.2)).toBe("0 km/h");
    expect(formatSpeed(undefined)).toBe("—");
    expect(formatDistance(849.6)).toBe("850 m");
    expect(formatDistance(12_449)).toBe("12.4 km");
    expect(formatDistance(null)).toBe("—");
  });

  it("clock times and ETAs in a given zone", () => {
    const ms = Date.parse("2026-02-07T14:05:09Z");
    expect(formatClock(ms, "UTC")).toBe("14:05:09");
    expect(formatClock(ms, "Europe/Helsinki")).toBe("16:05:09");
    expect(formatEta(720, "2026-02-07T14:32:00.000Z", "UTC")).toBe("12 min (14:32)");
    expect(formatEta(720, null, "UTC")).toBe("12 min");
    expect(formatEta(null, "2026-02-07T14:32:00.000Z")).toBe("—");
  });

  it("ages and counts", () => {
    expect(formatAge(1000, 5000)).toBe("just now");
    expect(formatAge(0, 180_000)).toBe("3 min ago");
    expect(formatCount(950)).toBe("950");
    expect(formatCount(1234)).toBe("1.2k");
    expect(formatCount(3_400_000)).toBe("3.4M");
  });
});

describe("stopEta", () => {
  const now = Date.parse("2026-12-03T10:00:00Z");
  it("says when and how long until a remaining stop", () => {
    expect(stopEta("2026-12-03T10:23:10Z", now, null, "UTC")).toEqual({
      text: "ETA 10:23 · in 23 min",
      late: false,
    });
    expect(stopEta("2026-12-03T10:00:20Z", now, null, "UTC")?.text).toBe("ETA 10:00 · due");
  });
  it("flags a stop its ETA puts after the end of its time window", () => {
    expect(stopEta("2026-12-03T12:05:00Z", now, "12:00", "UTC")?.late).toBe(true);
    expect(stopEta("2026-12-03T11:55:00Z", now, "12:00", "UTC")?.late).toBe(false);
  });
  it("has nothing to say without an ETA", () => {
    expect(stopEta(null, now)).toBeNull();
    expect(stopEta("not a time", now)).toBeNull();
  });
});
