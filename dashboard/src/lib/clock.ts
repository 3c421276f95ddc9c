// The playback clock: track time advances `speed` times faster than the wall clock while
// playing, and stops at the end of the window.

export const SPEEDS = [1, 2, 5, 10, 30, 60] as const;

export interface Clock {
  start: number; // track time (epoch ms) of the window start
  end: number; // track time (epoch ms) of the window end
  playing: boolean;
  speed: number;
  anchorWall: number; // wall time (ms) when anchorT was current
  anchorT: number; // track time at anchorWall
}

export function newClock(start: number, end: number, wallMs: number, speed = 10): Clock {
  return { start, end, playing: false, speed, anchorWall: wallMs, anchorT: start };
}

/** Track time shown at wall time wallMs. */
export function clockTime(c: Clock, wallMs: number): number {
  if (!c.playing) return c.anchorT;
  const t = c.anchorT + (wallMs - c.anchorWall) * c.speed;
  return Math.min(c.end, Math.max(c.start, t));
}

export function play(c: Clock, wallMs: number): Clock {
  // Playing from the end starts over.
  const t = clockTime(c, wallMs);
  return { ...c, playing: true, anchorWall: wallMs, anchorT: t >= c.end ? c.start : t };
}

export function pause(c: Clock, wallMs: number): Clock {
  return { ...c, playing: false, anchorWall: wallMs, anchorT: clockTime(c, wallMs) };
}

export function seek(c: Clock, t: number, wallMs: number): Clock {
  return { ...c, anchorWall: wallMs, anchorT: Math.min(c.end, Math.max(c.start, t)) };
}

export function setSpeed(c: Clock, speed: number, wallMs: number): Clock {
  if (!(speed > 0)) throw new RangeError(`speed must be positive, got ${speed}`);
  return { ...c, speed, anchorWall: wallMs, anchorT: clockTime(c, wallMs) };
}

/** True once a playing clock has reached the end of the window. */
export function finished(c: Clock, wallMs: number): boolean {
  return clockTime(c, wallMs) >= c.end;
}
