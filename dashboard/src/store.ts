// The app's state (zustand): the session, the live fleet with each marker's motion, the
// selection and the list filter.
import { create } from "zustand";
import { nextMotion, type Motion } from "./lib/interpolate";
import type { LiveDriverRow, LivePosition, User } from "./types";

export interface Auth {
  accessToken: string;
  refreshToken?: string;
  user: User;
}

export interface LiveDriver {
  id: string;
  name: string;
  deviceId: string;
  status: string;
  position: LivePosition | null;
  motion?: Motion;
}

export type LiveStatus = "moving" | "stopped" | "stale" | "no position";

/** How long without a fix before a driver shows as stale. */
export const STALE_MS = 5 * 60_000;
/** Slower than this is stopped (GPS speed noise at a standstill). */
export const MOVING_KMH = 3;

export function liveStatus(d: LiveDriver, nowMs: number): LiveStatus {
  if (!d.position) return "no position";
  if (nowMs - d.position.fixTimeMs > STALE_MS) return "stale";
  return (d.position.speed ?? 0) >= MOVING_KMH ? "moving" : "stopped";
}

export interface Filter {
  text: string;
  status: LiveStatus | "all";
}

export interface State {
  auth: Auth | null;
  drivers: Record<string, LiveDriver>;
  selectedDriverId: string | null;
  filter: Filter;
  socket: "off" | "connecting" | "live" | "refused";
  /** Bumped on every visit:update so the open driver's visits refetch. */
  visitsVersion: number;
  setAuth(auth: Auth | null): void;
  logout(): void;
  applySnapshot(rows: LiveDriverRow[], nowMs: number): void;
  applyPositions(positions: LivePosition[], nowMs: number): void;
  select(id: string | null): void;
  setFilter(f: Partial<Filter>): void;
  setSocket(s: State["socket"]): void;
  visitChanged(): void;
}

const SESSION_KEY = "fleetpulse.auth";

function loadAuth(): Auth | null {
  try {
    const raw = globalThis.sessionStorage?.getItem(SESSION_KEY);
    return raw ? (JSON.parse(raw) as Auth) : null;
  } catch {
    return null;
  }
}

function saveAuth(auth: Auth | null): void {
  try {
    if (auth) globalThis.sessionStorage?.setItem(SESSION_KEY, JSON.stringify(auth));
    else globalThis.sessionStorage?.removeItem(SESSION_KEY);
  } catch {
    // storage unavailable (tests, private mode): the session lives in memory only
  }
}

/**
 * A position from any source as the store keeps it: ``positions:batch`` entries carry only
 * some fields (fixTime but not fixTimeMs, no next customer name), so the time is derived and
 * what the entry lacks is kept from the previous position while the next stop is the same.
 * Returns null for a position without a usable time or place.
 */
export function normalizePosition(p: LivePosition, prev: LivePosition | null): LivePosition | null {
  const fixTimeMs = typeof p.fixTimeMs === "number" ? p.fixTimeMs : Date.parse(p.fixTime ?? "");
  if (!Number.isFinite(fixTimeMs) || !Number.isFinite(p.lat) || !Number.isFinite(p.lon)) return null;
  const sameStop = prev !== null && (p.nextVisitId === undefined || p.nextVisitId === prev.nextVisitId);
  const merged: LivePosition = { ...(sameStop ? prev : {}), ...p, fixTimeMs } as LivePosition;
  if (p.eta === undefined && typeof p.etaSeconds === "number") {
    merged.eta = new Date(fixTimeMs + p.etaSeconds * 1000).toISOString();
  }
  if (p.etaSeconds === null) merged.eta = null;
  return merged;
}

function withPosition(d: LiveDriver, raw: LivePosition, nowMs: number): LiveDriver {
  const p = normalizePosition(raw, d.position);
  if (p === null) return d;
  if (d.position && p.fixTimeMs <= d.position.fixTimeMs) return d; // late frame
  return { ...d, position: p, motion: nextMotion(d.motion, p, nowMs) };
}

export const useStore = create<State>()((set, get) => ({
  auth: loadAuth(),
  drivers: {},
  selectedDriverId: null,
  filter: { text: "", status: "all" },
  socket: "off",
  visitsVersion: 0,
  setAuth(auth) {
    saveAuth(auth);
    set({ auth, drivers: {}, selectedDriverId: null });
  },
  logout() {
    get().setAuth(null);
  },
  applySnapshot(rows, nowMs) {
    const prev = get().drivers;
    const drivers: Record<string, LiveDriver> = {};
    for (const r of rows) {
      const old = prev[r.id];
      let d: LiveDriver = old
        ? { ...old, name: r.name, deviceId: r.deviceId, status: r.status }
        : { id: r.id, name: r.name, deviceId: r.deviceId, status: r.status, position: null };
      if (r.position) d = withPosition(d, r.position, nowMs);
      drivers[r.id] = d;
    }
    set({ drivers });
  },
  applyPositions(positions, nowMs) {
    const tenant = get().auth?.user.tenantId;
    const drivers = { ...get().drivers };
    let changed = false;
    for (const p of positions) {
      if (tenant && p.tenantId && p.tenantId !== tenant) continue; // never another tenant's
      const d = drivers[p.driverId] ?? {
        id: p.driverId,
        name: p.driverName ?? p.deviceId ?? p.driverId.slice(0, 8),
        deviceId: p.deviceId ?? "",
        status: "unknown",
        position: null,
      };
      const next = withPosition(d, p, nowMs);
      if (next !== d || !(p.driverId in get().drivers)) {
        drivers[p.driverId] = next;
        changed = true;
      }
    }
    if (changed) set({ drivers });
  },
  select(id) {
    set({ selectedDriverId: id });
  },
  setFilter(f) {
    set({ filter: { ...get().filter, ...f } });
  },
  setSocket(socket) {
    set({ socket });
  },
  visitChanged() {
    set({ visitsVersion: get().visitsVersion + 1 });
  },
}));

/** The drivers the list shows: filter by name/device text and live status, by name. */
export function filterDrivers(
  drivers: Record<string, LiveDriver>,
  f: Filter,
  nowMs: number,
): LiveDriver[] {
  const text = f.text.trim().toLowerCase();
  return Object.values(drivers)
    .filter((d) => !text || d.name.toLowerCase().includes(text) || d.deviceId.toLowerCase().includes(text))
    .filter((d) => f.status === "all" || liveStatus(d, nowMs) === f.status)
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}
