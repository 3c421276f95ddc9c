import { describe, expect, it } from "vitest";
import { clockTime, finished, newClock, pause, play, seek, setSpeed, SPEEDS } from "../lib/clock";

describe("playback clock (time scaling)", () => {
  const start = 1_000_000;
  const end = start + 3_600_000;

  it("stands still until played", () => {
    const c = newClock(start, end, 0, 10);
    expect(clockTime(c, 50_000)).toBe(start);
  });

  it("runs speed times faster than the wall clock", () => {
    for (const speed of SPEEDS) {
      const c = play(newClock(start, end, 0, speed), 100);
      expect(clockTime(c, 100 + 5_000)).toBe(start + 5_000 * speed);
    }
  });

  it("keeps the shown time when the speed changes", () => {
    let c = play(newClock(start, end, 0, 1), 0);
    c = setSpeed(c, 60, 1_000);
    expect(clockTime(c, 1_000)).toBe(start + 1_000);
    expect(clockTime(c, 2_000)).toBe(start + 1_000 + 60_000);
    expect(() => setSpeed(c, 0, 0)).toThrow(RangeError);
  });

  it("pauses and resumes where it was", () => {
    let c = play(newClock(start, end, 0, 10), 0);
    c = pause(c, 1_000);
    expect(clockTime(c, 9_999)).toBe(start + 10_000);
    c = play(c, 20_000);
    expect(clockTime(c, 21_000)).toBe(start + 20_000);
  });

  it("stops at the end and starts over when played again", () => {
    let c = play(newClock(start, end, 0, 60), 0);
    expect(clockTime(c, 10_000_000)).toBe(end);
    expect(finished(c, 10_000_000)).toBe(true);
    c = play(pause(c, 10_000_000), 10_000_001);
    expect(clockTime(c, 10_000_001)).toBe(start);
  });

  it("seeks inside the window only", () => {
    const c = newClock(start, end, 0);
    expect(clockTime(seek(c, start - 5, 0), 0)).toBe(start);
    expect(clockTime(seek(c, end + 5, 0), 0)).toBe(end);
    expect(clockTime(seek(c, start + 42, 0), 0)).toBe(start + 42);
  });
});
