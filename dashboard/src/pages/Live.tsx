// Live: every driver of the tenant gliding between frames, the list with status, speed, next
// stop and ETA, search and filter; a click opens the driver's route and visits.
import { useEffect, useMemo, useRef, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { PathLayer, ScatterplotLayer } from "@deck.gl/layers";
import type { Layer } from "@deck.gl/core";
import { api, ApiError } from "../api";
import { MapView, fitTo, type MapHandle } from "../map/MapView";
import { positionAt } from "../lib/interpolate";
import { formatAge, formatDistance, formatEta, formatSpeed, stopEta } from "../lib/format";
import { boundsOf } from "../lib/track";
import { mainCluster } from "../lib/cluster";
import { filterDrivers, liveStatus, useStore, type LiveDriver, type LiveStatus } from "../store";
import { hooks } from "../testHooks";
import type { LiveDriverRow, Route } from "../types";

type Rgb = [number, number, number];

export const STATUS_COLORS: Record<LiveStatus, Rgb> = {
  moving: [22, 163, 74],
  stopped: [37, 99, 235],
  stale: [148, 163, 184],
  "no position": [148, 163, 184],
};

export const VISIT_COLORS: Record<string, Rgb> = {
  pending: [148, 163, 184],
  arrived: [37, 99, 235],
  in_progress: [37, 99, 235],
  departed: [14, 165, 233],
  completed: [22, 163, 74],
  skipped: [234, 88, 12],
  failed: [220, 38, 38],
  cancelled: [100, 116, 139],
};

interface Customer {
  id: number;
  name: string;
  lat: number;
  lng: number;
}

async function driverRoute(id: string): Promise<Route | null> {
  try {
    return await api<Route>(`/api/routes/driver/${id}/active`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const today = await api<Route[]>(`/api/routes/driver/${id}/today`);
  return today.length ? api<Route>(`/api/routes/${today[0].id}`) : null;
}

function useNow(everyMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

export function Live() {
  const drivers = useStore((s) => s.drivers);
  const filter = useStore((s) => s.filter);
  const setFilter = useStore((s) => s.setFilter);
  const selectedId = useStore((s) => s.selectedDriverId);
  const select = useStore((s) => s.select);
  const socket = useStore((s) => s.socket);
  const visitsVersion = useStore((s) => s.visitsVersion);
  const now = useNow(1000);
  const handle = useRef<MapHandle | null>(null);
  const fitted = useRef(false);

  // The first frame (and a fallback poll while the socket is not live).
  const snapshot = useQuery({
    queryKey: ["live"],
    queryFn: () => api<{ drivers: LiveDriverRow[] }>("/api/map/live"),
    refetchInterval: socket === "live" ? 60_000 : 3_000,
  });
  useEffect(() => {
    if (snapshot.data) useStore.getState().applySnapshot(snapshot.data.drivers, performance.now());
  }, [snapshot.data]);

  const customers = useQuery({
    queryKey: ["customers"],
    queryFn: () => api<Customer[]>("/api/customers?limit=500"),
    staleTime: 60_000,
  });
  const customerById = useMemo(
    () => new Map((customers.data ?? []).map((c) => [c.id, c])),
    [customers.data],
  );

  const route = useQuery({
    queryKey: ["route", selectedId, visitsVersion],
    queryFn: () => driverRoute(selectedId!),
    enabled: selectedId !== null,
    // the worker rewrites every remaining stop's ETA as it moves (planned_visits.eta_at)
    refetchInterval: 30_000,
  });

  const list = filterDrivers(drivers, filter, now);
  const selected = selectedId ? drivers[selectedId] : undefined;

  // Fit the map to the fleet once positions are known.
  useEffect(() => {
    if (fitted.current || !handle.current) return;
    const pts = Object.values(drivers)
      .filter((d) => d.position)
      .map((d) => [d.position!.lon, d.position!.lat] as [number, number]);
    if (pts.length) {
      fitTo(handle.current, boundsOf([mainCluster(pts)])); // where most of the fleet is
      fitted.current = true;
    }
  }, [drivers]);

  // The animation loop: markers glide between frames (deck layers only, no React render).
  const routeData = route.data ?? null;
  useEffect(() => {
    let raf = 0;
    let last = 0;
    const frame = (t: number) => {
      raf = requestAnimationFrame(frame);
      if (t - last < 33 || !handle.current) return; // ~30 fps is smooth enough
      last = t;
      handle.current.overlay.setProps({
        layers: liveLayers(
          useStore.getState().drivers,
          performance.now(),
          Date.now(),
          useStore.getState().selectedDriverId,
          routeData,
          customerById,
        ),
      });
    };
    raf = requestAnimationFrame(frame);
    return () => cancelAnimationFrame(raf);
  }, [routeData, customerById]);

  return (
    <div className="split">
      <aside className="sidebar">
        <div className="filters">
          <input
            placeholder="Search name or device"
            value={filter.text}
            onChange={(e) => setFilter({ text: e.target.value })}
            data-testid="driver-search"
          />
          <select
            value={filter.status}
            onChange={(e) => setFilter({ status: e.target.value as LiveStatus | "all" })}
            data-testid="status-filter"
          >
            <option value="all">all</option>
            <option value="moving">moving</option>
            <option value="stopped">stopped</option>
            <option value="stale">stale</option>
            <option value="no position">no position</option>
          </select>
        </div>
        <p className="muted" data-testid="driver-count">
          {list.length} of {Object.keys(drivers).length} drivers
        </p>
        <ul className="drivers">
          {list.map((d) => (
            <DriverRow key={d.id} d={d} now={now} selected={d.id === selectedId} onClick={() => select(d.id)} />
          ))}
        </ul>
      </aside>
      <section className="mapbox">
        <MapView
          testId="live-map"
          onReady={(h) => {
            handle.current = h;
            h.overlay.setProps({
              onClick: (info) => {
                const obj = info.object as { id?: string } | null;
                if (obj && info.layer?.id === "drivers" && obj.id) select(obj.id);
              },
            });
          }}
        />
        {selected && (
          <DriverPanel
            d={selected}
            route={route.data ?? null}
            loading={route.isLoading}
            customers={customerById}
            now={now}
            onClose={() => select(null)}
            onFocus={() => {
              const pts = route.data?.geometry?.coordinates ?? [];
              const b = boundsOf([pts, selected.position ? [[selected.position.lon, selected.position.lat]] : []]);
              fitTo(handle.current, b);
            }}
          />
        )}
      </section>
    </div>
  );
}

function DriverRow({ d, now, selected, onClick }: { d: LiveDriver; now: number; selected: boolean; onClick: () => void }) {
  const st = liveStatus(d, now);
  const p = d.position;
  return (
    <li className={selected ? "selected" : ""} onClick={onClick} data-testid="driver-row" data-driver-id={d.id}>
      <div className="row1">
        <span className="dot" style={{ background: `rgb(${STATUS_COLORS[st].join(",")})` }} />
        <strong>{d.name}</strong>
        <span className="muted">{d.deviceId}</span>
        <span className="right">{formatSpeed(p?.speed)}</span>
      </div>
      <div className="row2 muted">
        <span>{st}</span>
        {p && <span>{formatAge(p.fixTimeMs, now)}</span>}
        <span className="right">
          {p?.nextCustomerName ? `→ ${p.nextCustomerName} · ${formatEta(p.etaSeconds, p.eta)}` : "no next stop"}
        </span>
      </div>
    </li>
  );
}

function DriverPanel(props: {
  d: LiveDriver;
  route: Route | null;
  loading: boolean;
  customers: Map<number, Customer>;
  now: number;
  onClose: () => void;
  onFocus: () => void;
}) {
  const { d, route, loading, customers, now, onClose, onFocus } = props;
  const p = d.position;
  return (
    <div className="panel" data-testid="driver-panel">
      <div className="panel-head">
        <strong>{d.name}</strong>
        <button onClick={onFocus}>Zoom</button>
        <button onClick={onClose} aria-label="close">
          ×
        </button>
      </div>
      <p className="muted">
        {d.deviceId} · {formatSpeed(p?.speed)}
        {p?.nextCustomerName && (
          <>
            {" "}
            · next {p.nextCustomerName} in {formatDistance(p.distanceToNextM)}, ETA {formatEta(p.etaSeconds, p.eta)}
          </>
        )}
      </p>
      {loading && <p>Loading route…</p>}
      {!loading && !route && <p data-testid="no-route">No route today.</p>}
      {route && (
        <div data-testid="route">
          <p>
            <strong data-testid="route-name">{route.name}</strong> · {route.status} · {route.completedStops}/
            {route.totalStops} stops
          </p>
          <ol className="visits">
            {(route.visits ?? []).map((v) => {
              const eta = v.status === "pending" ? stopEta(v.etaAt, now, v.timeWindowEnd) : null;
              return (
                <li key={v.id} data-testid="visit" data-status={v.status}>
                  <span className="dot" style={{ background: `rgb(${(VISIT_COLORS[v.status] ?? [0, 0, 0]).join(",")})` }} />
                  {customers.get(v.customerId)?.name ?? `customer ${v.customerId}`}
                  <span className="muted"> · {v.status.replace("_", " ")}</span>
                  {v.timeWindowStart && (
                    <span className="muted">
                      {" "}
                      · {v.timeWindowStart}–{v.timeWindowEnd}
                    </span>
                  )}
                  {eta && (
                    <span data-testid="visit-eta" className={eta.late ? "late" : "muted"}>
                      {" "}
                      · {eta.text}
                      {eta.late && " · misses its window"}
                    </span>
                  )}
                </li>
              );
            })}
          </ol>
        </div>
      )}
    </div>
  );
}

interface Marker {
  id: string;
  position: [number, number];
  color: Rgb;
  selected: boolean;
}

export function liveLayers(
  drivers: Record<string, LiveDriver>,
  perfNow: number,
  wallNow: number,
  selectedId: string | null,
  route: Route | null,
  customers: Map<number, Customer>,
): Layer[] {
  const markers: Marker[] = [];
  for (const d of Object.values(drivers)) {
    if (!d.motion) continue;
    markers.push({
      id: d.id,
      position: positionAt(d.motion, perfNow),
      color: STATUS_COLORS[liveStatus(d, wallNow)],
      selected: d.id === selectedId,
    });
  }
  hooks.liveMarkers = markers.length;
  if (hooks.trace) hooks.livePositions = Object.fromEntries(markers.map((m) => [m.id, m.position]));
  const layers: Layer[] = [];
  const path = route?.geometry?.coordinates ?? [];
  hooks.routePoints = path.length;
  if (path.length > 1) {
    layers.push(
      new PathLayer({
        id: "route",
        data: [{ path }],
        getPath: (x: { path: [number, number][] }) => x.path,
        getColor: [99, 102, 241, 200],
        getWidth: 5,
        widthUnits: "pixels",
        capRounded: true,
        jointRounded: true,
      }),
    );
  }
  const stops = (route?.visits ?? [])
    .map((v) => ({ v, c: customers.get(v.customerId) }))
    .filter((x): x is { v: NonNullable<Route["visits"]>[number]; c: Customer } => x.c !== undefined);
  if (stops.length) {
    layers.push(
      new ScatterplotLayer({
        id: "stops",
        data: stops,
        getPosition: (x: (typeof stops)[number]) => [x.c.lng, x.c.lat],
        getFillColor: (x: (typeof stops)[number]) => VISIT_COLORS[x.v.status] ?? [0, 0, 0],
        getLineColor: [255, 255, 255],
        stroked: true,
        lineWidthUnits: "pixels",
        getLineWidth: 2,
        radiusUnits: "pixels",
        getRadius: 8,
      }),
    );
  }
  layers.push(
    new ScatterplotLayer<Marker>({
      id: "drivers",
      data: markers,
      pickable: true,
      getPosition: (m) => m.position,
      getFillColor: (m) => m.color,
      getLineColor: (m) => (m.selected ? [17, 24, 39] : [255, 255, 255]),
      getRadius: (m) => (m.selected ? 9 : 6),
      radiusUnits: "pixels",
      stroked: true,
      lineWidthUnits: "pixels",
      getLineWidth: 2,
      updateTriggers: { getPosition: perfNow, getFillColor: wallNow, getRadius: selectedId, getLineColor: selectedId },
    }),
  );
  hooks.frames += 1;
  return layers;
}
