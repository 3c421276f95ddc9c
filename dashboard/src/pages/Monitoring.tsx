// Monitoring (admins): CDC lag per table, pipeline throughput and health, dead letters.
import { useRef } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { counters } from "../live";
import { formatCount } from "../lib/format";

interface LagTable {
  table: string;
  status: string;
  lagMs: number | null;
  eventsProcessed: number;
  errors: number;
  pendingMessages: number;
  lastAppliedAt: string | null;
}

interface Lag {
  status: string;
  tables: LagTable[];
  totals: { eventsProcessed: number; errors: number; kafkaLag: number; maxLagMs: number | null };
  kafka: { available: boolean };
}

interface Health {
  status: string;
  services: Record<string, string>;
  details: { kafka?: { workerLag?: { total: number } } };
}

interface DeadLetter {
  partition: number;
  offset: number;
  timestamp: number;
  error: string;
  reason: string;
  replayedAt: string | null;
}

/** Events per second between two samples of a growing counter. */
export function rate(prev: { n: number; t: number } | null, n: number, t: number): number | null {
  if (!prev || t <= prev.t || n < prev.n) return null;
  return ((n - prev.n) * 1000) / (t - prev.t);
}

function useRate(n: number | undefined): number | null {
  const prev = useRef<{ n: number; t: number } | null>(null);
  const last = useRef<number | null>(null);
  if (n === undefined) return null;
  const t = Date.now();
  if (prev.current && t - prev.current.t >= 1000) {
    last.current = rate(prev.current, n, t);
    prev.current = { n, t };
  } else if (!prev.current) prev.current = { n, t };
  return last.current;
}

export function Monitoring() {
  const lag = useQuery({ queryKey: ["lag"], queryFn: () => api<Lag>("/api/sync/lag"), refetchInterval: 5_000 });
  const health = useQuery({ queryKey: ["health"], queryFn: () => api<Health>("/api/health"), refetchInterval: 5_000 });
  const dlq = useQuery({
    queryKey: ["dlq"],
    queryFn: () => api<{ deadLetters: DeadLetter[] }>("/api/admin/dead-letters?limit=50"),
    refetchInterval: 15_000,
  });
  const cdcRate = useRate(lag.data?.totals.eventsProcessed);
  const liveRate = useRate(counters.positions);

  return (
    <div className="pad monitoring">
      <section>
        <h2>Pipeline</h2>
        <p data-testid="health">
          overall <b>{health.data?.status ?? "…"}</b>
          {health.data &&
            Object.entries(health.data.services).map(([k, v]) => (
              <span key={k} className={`pill pill-${v}`}>
                {k}: {v}
              </span>
            ))}
        </p>
        <p>
          enrichment backlog (Kafka lag): <b>{health.data?.details.kafka?.workerLag?.total ?? "—"}</b> · live positions
          received here: <b>{liveRate === null ? "—" : `${formatCount(liveRate)}/s`}</b> · CDC events applied:{" "}
          <b>{cdcRate === null ? "—" : `${formatCount(cdcRate)}/s`}</b>
        </p>
      </section>
      <section>
        <h2>CDC lag per table {lag.data && <span className={`pill pill-${lag.data.status}`}>{lag.data.status}</span>}</h2>
        {lag.isError && <p className="error">{String(lag.error)}</p>}
        <table data-testid="cdc-lag">
          <thead>
            <tr>
              <th>table</th>
              <th>status</th>
              <th>lag</th>
              <th>pending</th>
              <th>applied</th>
              <th>errors</th>
              <th>last applied</th>
            </tr>
          </thead>
          <tbody>
            {lag.data?.tables.map((t) => (
              <tr key={t.table}>
                <td>{t.table}</td>
                <td>
                  <span className={`pill pill-${t.status}`}>{t.status}</span>
                </td>
                <td>{t.lagMs === null ? "—" : `${Math.round(t.lagMs)} ms`}</td>
                <td>{t.pendingMessages}</td>
                <td>{t.eventsProcessed}</td>
                <td>{t.errors}</td>
                <td>{t.lastAppliedAt ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section>
        <h2>Dead letters</h2>
        {dlq.isError && <p className="error">{String(dlq.error)}</p>}
        <table data-testid="dead-letters">
          <thead>
            <tr>
              <th>partition/offset</th>
              <th>time</th>
              <th>error</th>
              <th>reason</th>
              <th>replayed</th>
            </tr>
          </thead>
          <tbody>
            {dlq.data?.deadLetters.length === 0 && (
              <tr>
                <td colSpan={5}>none</td>
              </tr>
            )}
            {dlq.data?.deadLetters.map((d) => (
              <tr key={`${d.partition}/${d.offset}`}>
                <td>
                  {d.partition}/{d.offset}
                </td>
                <td>{new Date(d.timestamp).toISOString()}</td>
                <td>{d.error}</td>
                <td>{d.reason}</td>
                <td>{d.replayedAt ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}
