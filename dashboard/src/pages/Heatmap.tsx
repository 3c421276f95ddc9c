// Heatmap: the tenant's H3 cells with a metric over a time range, coloured with a legend.
import { useEffect, useMemo, useRef, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { H3HexagonLayer } from "@deck.gl/geo-layers";
import { cellToLatLng } from "h3-js";
import { api, query } from "../api";
import { MapView, fitTo, type MapHandle } from "../map/MapView";
import { METRICS, colorOf, legend, scaleOf, type Metric } from "../lib/heat";
import { formatCount, toLocalInput } from "../lib/format";
import { boundsOf } from "../lib/track";
import { mainCluster } from "../lib/cluster";
import { hooks } from "../testHooks";

interface Cell {
  cell: string;
  value: number;
}

export function Heatmap() {
  const [metric, setMetric] = useState<Metric>("positions");
  const [resolution, setResolution] = useState(8);
  const [from, setFrom] = useState(() => toLocalInput(Date.now() - 24 * 3600_000));
  const [to, setTo] = useState(() => toLocalInput(Date.now() + 3600_000));
  const handle = useRef<MapHandle | null>(null);
  const fitted = useRef("");

  const params = {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    resolution,
    metric,
  };
  const cells = useQuery({
    queryKey: ["heatmap", params],
    queryFn: () => api<{ cells: Cell[] }>(`/api/analytics/heatmap?${query(params)}`),
  });
  const data = useMemo(() => cells.data?.cells ?? [], [cells.data]);
  const scale = useMemo(() => scaleOf(data.map((c) => c.value)), [data]);

  useEffect(() => {
    hooks.hexagons = data.length;
    hooks.frames += 1;
    handle.current?.overlay.setProps({
      layers: [
        new H3HexagonLayer<Cell>({
          id: "hexagons",
          data,
          getHexagon: (c) => c.cell,
          getFillColor: (c) => colorOf(c.value, scale),
          extruded: false,
          stroked: true,
          getLineColor: [255, 255, 255, 120],
          lineWidthMinPixels: 1,
          pickable: true,
          updateTriggers: { getFillColor: [scale.min, scale.max] },
        }),
      ],
    });
    const key = `${metric}:${resolution}:${from}:${to}`;
    if (data.length && fitted.current !== key) {
      fitted.current = key;
      const centres = data.map((c) => {
        const [lat, lon] = cellToLatLng(c.cell);
        return [lon, lat] as [number, number];
      });
      fitTo(handle.current, boundsOf([mainCluster(centres)]));
    }
  }, [data, scale, metric, resolution, from, to]);

  return (
    <div className="split">
      <aside className="sidebar">
        <label>
          Metric
          <select value={metric} onChange={(e) => setMetric(e.target.value as Metric)} data-testid="heat-metric">
            {Object.entries(METRICS).map(([k, label]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Resolution {resolution}
          <input
            type="range"
            min={5}
            max={9}
            value={resolution}
            onChange={(e) => setResolution(Number(e.target.value))}
            data-testid="heat-resolution"
          />
        </label>
        <label>
          From
          <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} />
        </label>
        <label>
          To
          <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} />
        </label>
        <button onClick={() => cells.refetch()}>Refresh</button>
        {cells.isError && <p className="error">{String(cells.error)}</p>}
        <p className="muted" data-testid="heat-count">
          {data.length} cells
        </p>
        <div className="legend" data-testid="legend">
          <strong>{METRICS[metric]}</strong>
          {legend(scale).map((l, i) => (
            <div key={i}>
              <span className="swatch" style={{ background: `rgb(${l.color.slice(0, 3).join(",")})` }} />
              {formatCount(l.value)}
            </div>
          ))}
        </div>
      </aside>
      <section className="mapbox">
        <MapView testId="heatmap-map" onReady={(h) => (handle.current = h)} />
      </section>
    </div>
  );
}
