import { beforeEach, describe, expect, it } from "vitest";
import { filterDrivers, liveStatus, STALE_MS, useStore } from "../store";
import type { LiveDriverRow, LivePosition } from "../types";

const NOW = Date.parse("2026-02-07T12:00:00Z");

function pos(driverId: string, fixTimeMs: number, lon: number, extra: Partial<LivePosition> = {}): LivePosition {
  return { driverId, tenantId: "tenant-1", fixTimeMs, lat: 60.17, lon, speed: 30, ...extra };
}

const rows: LiveDriverRow[] = [
  { id: "a", name: "Jane Doe", deviceId: "DEV002", status: "available", active: true, position: pos("a", NOW, 24.9) },
  { id: "b", name: "John Smith", deviceId: "DEV001", status: "available", active: true, position: null },
];

beforeEach(() => {
  useStore.setState({
    auth: { accessToken: "t", user: { id: "u", email: "x@y", role: "admin", tenantId: "tenant-1" } },
    drivers: {},
    selectedDriverId: null,
    filter: { text: "", status: "all" },
  });
});

describe("store", () => {
  it("takes the snapshot, with a motion for drivers that have a position", () => {
    useStore.getState().applySnapshot(rows, 0);
    const d = useStore.getState().drivers;
    expect(Object.keys(d).sort()).toEqual(["a", "b"]);
    expect(d.a.motion?.toLon).toBe(24.9);
    expect(d.b.motion).toBeUndefined();
  });

  it("moves drivers forward only, and glides", () => {
    const s = useStore.getState();
    s.applySnapshot(rows, 0);
    s.applyPositions([pos("a", NOW + 2000, 24.901)], 100);
    expect(useStore.getState().drivers.a.position?.lon).toBe(24.901);
    expect(useStore.getState().drivers.a.motion?.duration).toBe(2000);
    s.applyPositions([pos("a", NOW + 1000, 99)], 200); // late frame
    expect(useStore.getState().drivers.a.position?.lon).toBe(24.901);
  });

  it("never takes another tenant's position", () => {
    useStore.getState().applyPositions([pos("z", NOW, 24.9, { tenantId: "tenant-2" })], 0);
    expect(useStore.getState().drivers.z).toBeUndefined();
  });

  it("adds a driver first seen on the feed", () => {
    useStore.getState().applyPositions([pos("c", NOW, 24.9, { driverName: "Bob" })], 0);
    expect(useStore.getState().drivers.c.name).toBe("Bob");
  });

  it("derives the live status", () => {
    useStore.getState().applySnapshot(rows, 0);
    const d = useStore.getState().drivers;
    expect(liveStatus(d.a, NOW + 1000)).toBe("moving");
    expect(liveStatus({ ...d.a, position: { ...d.a.position!, speed: 1 } }, NOW)).toBe("stopped");
    expect(liveStatus(d.a, NOW + STALE_MS + 1)).toBe("stale");
    expect(liveStatus(d.b, NOW)).toBe("no position");
  });

  it("filters by text and status, sorted by name", () => {
    useStore.getState().applySnapshot(rows, 0);
    const d = useStore.getState().drivers;
    expect(filterDrivers(d, { text: "", status: "all" }, NOW).map((x) => x.name)).toEqual(["Jane Doe", "John Smith"]);
    expect(filterDrivers(d, { text: "dev001", status: "all" }, NOW).map((x) => x.id)).toEqual(["b"]);
    expect(filterDrivers(d, { text: "", status: "moving" }, NOW).map((x) => x.id)).toEqual(["a"]);
    expect(filterDrivers(d, { text: "jane", status: "no position" }, NOW)).toEqual([]);
  });

  it("forgets the fleet on logout", () => {
    useStore.getState().applySnapshot(rows, 0);
    useStore.getState().select("a");
    useStore.getState().logout();
    expect(useStore.getState().auth).toBeNull();
    expect(useStore.getState().drivers).toEqual({});
    expect(useStore.getState().selectedDriverId).toBeNull();
  });
});

describe("positions:batch entries", () => {
  it("derive fixTimeMs from fixTime and keep the next stop's name while it is the same", async () => {
    const { normalizePosition } = await import("../store");
    const prev = pos("a", NOW, 24.9, { nextVisitId: "v1", nextCustomerName: "Shop", etaSeconds: 600 });
    const entry = {
      driverId: "a",
      lat: 60.171,
      lon: 24.91,
      fixTime: "2026-02-07T12:00:05.000Z",
      nextVisitId: "v1",
      etaSeconds: 300,
    } as unknown as LivePosition;
    const p = normalizePosition(entry, prev)!;
    expect(p.fixTimeMs).toBe(NOW + 5000);
    expect(p.nextCustomerName).toBe("Shop");
    expect(p.eta).toBe("2026-02-07T12:05:05.000Z");
    const moved = normalizePosition({ ...entry, nextVisitId: "v2" }, prev)!;
    expect(moved.nextCustomerName).toBeUndefined();
    expect(normalizePosition({ ...entry, fixTime: "nonsense" }, prev)).toBeNull();
  });

  it("move a driver through the store like full positions", () => {
    useStore.getState().applySnapshot(rows, 0);
    const entry = { driverId: "a", lat: 60.17, lon: 24.905, fixTime: new Date(NOW + 1000).toISOString() };
    useStore.getState().applyPositions([entry as unknown as LivePosition], 10);
    const d = useStore.getState().drivers.a;
    expect(d.position?.fixTimeMs).toBe(NOW + 1000);
    expect(d.motion?.toLon).toBe(24.905);
    expect(d.motion?.duration).toBe(1000);
  });
});
