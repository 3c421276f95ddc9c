// Playback: one driver or the fleet over a time range; slider, play/pause, 1x–60x, a trail,
// and the visit and geofence events on a timeline.
import { useEffect, useMemo, useRef, useState } from "react";
import { TripsLayer } from "@deck.gl/geo-layers";
import { ScatterplotLayer } from "@deck.gl/layers";
import { api, query } from "../api";
import { MapView, fitTo, type MapHandle } from "../map/MapView";
import { SPEEDS, clockTime, newClock, pause, play, seek, setSpeed, type Clock } from "../lib/clock";
import { formatClock, toLocalInput } from "../lib/format";
import { boundsOf, positionAtTime, toTrip, type Columns, type Trip } from "../lib/track";
import { mainCluster } from "../lib/cluster";
import { useStore } from "../store";
import { hooks } from "../testHooks";
import type { PlaybackEvent } from "../types";

const FLEET = "__fleet__";
const TRAILS = [
  { label: "1 min", s: 60 },
  { label: "5 min", s: 300 },
  { label: "15 min", s: 900 },
  { label: "1 h", s: 3600 },
];

interface Loaded {
  origin: number;
  start: number;
  end: number;
  trips: Trip[];
  events: { t: number; label: string; type: string }[];
}

interface DriverTrack extends Columns {
  events?: PlaybackEvent[];
}

interface FleetAnswer {
  drivers: ({ driverId: string } & Columns)[];
}

function eventLabel(e: PlaybackEvent): string {
  const who = (e.customer as string | undefined) ?? (e.geofenceId !== undefined ? `geofence ${String(e.geofenceId)}` : "");
  return `${String(e.type ?? e.kind ?? "event").replace(/_/g, " ")}${who ? ` · ${who}` : ""}`;
}

async function load(driver: string, from: number, to: number, bbox: string): Promise<Loaded> {
  const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
  if (driver === FLEET) {
    const a = await api<FleetAnswer>(`/api/playback?${query({ ...range, bbox })}`);
    return {
      origin: from,
      start: from,
      end: to,
      trips: a.drivers.map((d) => toTrip(d.driverId, d, from)),
      events: [],
    };
  }
  const a = await api<DriverTrack>(`/api/drivers/${driver}/playback?${query(range)}`);
  return {
    origin: from,
    start: from,
    end: to,
    trips: a.t.length ? [toTrip(driver, a, from)] : [],
    events: (a.events ?? [])
      .map((e) => ({ t: Date.parse(String(e.time)), label: eventLabel(e), type: String(e.type ?? "") }))
      .filter((e) => !Number.isNaN(e.t)),
  };
}

/** The fleet replay's box: where the fleet is now (padded), else the map's view. */
function fleetBox(points: number[][], h: MapHandle | null): string {
  const b = boundsOf([points as [number, number][]]);
  const pad = 0.1;
  let box: number[];
  if (b) box = [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad];
  else if (h) {
    const v = h.map.getBounds();
    box = [v.getWest(), v.getSouth(), v.getEast(), v.getNorth()];
  } else box = [-180, -85, 180, 85];
  return box.map((v) => v.toFixed(5)).join(",");
}

export function Playback() {
  const drivers = useStore((s) => s.drivers);
  const names = useMemo(
    () => Object.values(drivers).sort((a, b) => a.name.localeCompare(b.name)),
    [drivers],
  );
  const [driver, setDriver] = useState<string>("");
  const [from, setFrom] = useState(() => toLocalInput(Date.now() - 3600_000));
  const [to, setTo] = useState(() => toLocalInput(Date.now() + 60_000));
  const [trail, setTrail] = useState(300);
  const [data, setData] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [clock, setClock] = useState<Clock | null>(null);
  const [shown, setShown] = useState(0);
  const handle = useRef<MapHandle | null>(null);
  const clockRef = useRef<Clock | null>(null);
  clockRef.current = clock;

  useEffect(() => {
    if (!driver && names.length) setDriver(names[0].id);
  }, [driver, names]);

  async function onLoad() {
    setError(null);
    try {
      const f = new Date(from).getTime();
      const t = new Date(to).getTime();
      const bbox = fleetBox(
        Object.values(useStore.getState().drivers).flatMap((d) => (d.position ? [[d.position.lon, d.position.lat]] : [])),
        handle.current,
      );
      const loaded = await load(driver, f, t, bbox);
      // Start where the data starts, not at an empty beginning of the window.
      const first = Math.min(...loaded.trips.map((x) => x.timestamps[0] ?? Infinity));
      const startAt = Number.isFinite(first) ? loaded.origin + first * 1000 : f;
      setData(loaded);
      hooks.playbackTracks = loaded.trips.length;
      setClock(seek(newClock(f, t, performance.now(), clock?.speed ?? 10), startAt, performance.now()));
      fitTo(handle.current, boundsOf([mainCluster(loaded.trips.flatMap((x) => x.path))]));
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }

  // Draw loop: the clock runs on the wall clock, layers follow.
  useEffect(() => {
    let raf = 0;
    let last = 0;
    const frame = (w: number) => {
      raf = requestAnimationFrame(frame);
      const c = clockRef.current;
      if (!c || !data || !handle.current || w - last < 33) return;
      last = w;
      const t = clockTime(c, performance.now());
      const rel = (t - data.origin) / 1000;
      const heads = data.trips
        .map((trip) => ({ id: trip.id, position: positionAtTime(trip.path, trip.timestamps, rel) }))
        .filter((h): h is { id: string; position: [number, number] } => h.position !== null);
      hooks.playbackHead = heads[0]?.position ?? null;
      hooks.playbackTime = t;
      hooks.frames += 1;
      handle.current.overlay.setProps({
        layers: [
          new TripsLayer<Trip>({
            id: "trips",
            data: data.trips,
            getPath: (d) => d.path,
            getTimestamps: (d) => d.timestamps,
            getColor: [234, 88, 12],
            widthMinPixels: 4,
            capRounded: true,
            jointRounded: true,
            trailLength: trail,
            currentTime: rel,
          }),
          new ScatterplotLayer<{ id: string; position: [number, number] }>({
            id: "heads",
            data: heads,
            getPosition: (h) => h.position,
            getFillColor: [17, 24, 39],
            getLineColor: [255, 255, 255],
            stroked: true,
            radiusUnits: "pixels",
            getRadius: 7,
            lineWidthUnits: "pixels",
            getLineWidth: 2,
            updateTriggers: { getPosition: rel },
          }),
        ],
      });
      setShown(t);
    };
    raf = requestAnimationFrame(frame);
    return () => cancelAnimationFrame(raf);
  }, [data, trail]);

  const pct = (t: number) => (clock ? ((t - clock.start) / Math.max(1, clock.end - clock.start)) * 100 : 0);

  return (
    <div className="split">
      <aside className="sidebar">
        <label>
          Driver
          <select value={driver} onChange={(e) => setDriver(e.target.value)} data-testid="playback-driver">
            <option value={FLEET}>whole fleet</option>
            {names.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} data-testid="playback-from" />
        </label>
        <label>
          To
          <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} data-testid="playback-to" />
        </label>
        <label>
          Trail
          <select value={trail} onChange={(e) => setTrail(Number(e.target.value))}>
            {TRAILS.map((x) => (
              <option key={x.s} value={x.s}>
                {x.label}
              </option>
            ))}
          </select>
        </label>
        <button onClick={onLoad} disabled={!driver} data-testid="playback-load">
          Load
        </button>
        {error && <p className="error">{error}</p>}
        {data && (
          <p className="muted" data-testid="playback-summary">
            {data.trips.length} track(s), {data.trips.reduce((n, x) => n + x.path.length, 0)} points, {data.events.length}{" "}
            events
          </p>
        )}
        {data && data.events.length > 0 && (
          <ol className="events">
            {data.events.map((e, i) => (
              <li key={i}>
                <a
                  href="#"
                  onClick={(ev) => {
                    ev.preventDefault();
                    if (clock) setClock(seek(clock, e.t, performance.now()));
                  }}
                >
                  {formatClock(e.t)}
                </a>{" "}
                {e.label}
              </li>
            ))}
          </ol>
        )}
      </aside>
      <section className="mapbox">
        <MapView testId="playback-map" onReady={(h) => (handle.current = h)} />
        {clock && (
          <div className="player" data-testid="player">
            <button
              data-testid="play"
              onClick={() => setClock(clock.playing ? pause(clock, performance.now()) : play(clock, performance.now()))}
            >
              {clock.playing ? "Pause" : "Play"}
            </button>
            <select
              value={clock.speed}
              onChange={(e) => setClock(setSpeed(clock, Number(e.target.value), performance.now()))}
              data-testid="speed"
            >
              {SPEEDS.map((s) => (
                <option key={s} value={s}>
                  {s}x
                </option>
              ))}
            </select>
            <div className="timeline">
              <input
                type="range"
                min={clock.start}
                max={clock.end}
                step={1000}
                value={shown || clock.anchorT}
                onChange={(e) => setClock(seek(clock, Number(e.target.value), performance.now()))}
                data-testid="slider"
              />
              {data?.events.map((e, i) => (
                <span
                  key={i}
                  className={`tick tick-${e.type.includes("geofence") ? "geofence" : "visit"}`}
                  style={{ left: `${pct(e.t)}%` }}
                  title={`${formatClock(e.t)} ${e.label}`}
                />
              ))}
            </div>
            <span className="clock" data-testid="clock">
              {formatClock(shown || clock.anchorT)}
            </span>
          </div>
        )}
      </section>
    </div>
  );
}
