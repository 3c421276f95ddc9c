// Human-readable figures for the driver list, the timeline and the legend.

/** "45 s", "4 min", "1 h 05 min"; "—" when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return "—";
  }
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  return `${h} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** "42 km/h" (rounded); "—" when unknown. */
export function formatSpeed(kmh: number | null | undefined): string {
  if (kmh === null || kmh === undefined || !Number.isFinite(kmh)) return "—";
  return `${Math.round(Math.max(0, kmh))} km/h`;
}

/** "850 m", "12.4 km"; "—" when unknown. */
export function formatDistance(metres: number | null | undefined): string {
  if (metres === null || metres === undefined || !Number.isFinite(metres) || metres < 0) {
    return "—";
  }
  return metres < 1000 ? `${Math.round(metres)} m` : `${(metres / 1000).toFixed(1)} km`;
}

/** "14:05:09" in the given time zone (default: the browser's). */
export function formatClock(ms: number, timeZone?: string): string {
  return new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
    timeZone,
  }).format(new Date(ms));
}

/** "12 min (14:32)": time to go and the clock time of arrival. */
export function formatEta(
  etaSeconds: number | null | undefined,
  eta: string | null | undefined,
  timeZone?: string,
): string {
  if (etaSeconds === null || etaSeconds === undefined) return "—";
  const at = eta ? Date.parse(eta) : NaN;
  const clock = Number.isNaN(at) ? "" : ` (${formatClock(at, timeZone).slice(0, 5)})`;
  return `${formatDuration(etaSeconds)}${clock}`;
}

/** "just now", "3 min ago", … relative to nowMs. */
export function formatAge(thenMs: number, nowMs: number): string {
  const s = (nowMs - thenMs) / 1000;
  if (s < 10) return "just now";
  return `${formatDuration(s)} ago`;
}

/** A compact number: 950, 1.2k, 3.4M. */
export function formatCount(n: number): string {
  if (Math.abs(n) < 1000) return String(Math.round(n * 10) / 10);
  if (Math.abs(n) < 1_000_000) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** A value for `<input type="datetime-local">` (local time, minutes). */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/**
 * A remaining stop's ETA as the dispatcher reads it: "ETA 14:32 · in 23 min", and whether
 * it misses the stop's time window ("HH:MM" end, compared in the same time zone). Null when
 * the stop has no ETA (done, or the worker has none yet).
 */
export function stopEta(
  etaAt: string | null | undefined,
  nowMs: number,
  windowEnd?: string | null,
  timeZone?: string,
): { text: string; late: boolean } | null {
  if (!etaAt) return null;
  const at = Date.parse(etaAt);
  if (Number.isNaN(at)) return null;
  const clock = formatClock(at, timeZone).slice(0, 5);
  const inS = (at - nowMs) / 1000;
  const text = inS > 30 ? `ETA ${clock} · in ${formatDuration(inS)}` : `ETA ${clock} · due`;
  const late = !!windowEnd && /^\d\d:\d\d$/.test(windowEnd) && clock > windowEnd;
  return { text, late };
}
