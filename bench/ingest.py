"""End-to-end ingest benchmark driven by the simulator: N drivers at R positions/s.

Starts its own ``fleetpulse api`` and ``fleetpulse worker`` processes against a dedicated
database (``fp_bench_ingest`` by default: created afresh and migrated here, so that no earlier
run's history of the same simulated drivers is in it), with their own Kafka
topic prefix (``bench.``) and Redis key prefix; registers the simulated drivers, their
customers and routes through the API (so the workers do the real geofence and ETA work), then
lets the simulated fleet report through the real receivers:

* ``osmand`` — one form POST per position to the OsmAnd port (what phones do);
* ``traccar`` — one Traccar JSON forward per position;
* ``batch`` — NDJSON to ``POST /api/positions/batch``.

Measured, printed as JSON:

* sent / accepted (2xx) / stored in ``positions`` / loss (accepted − stored) / duplicates
  (records on ``gps.positions.enriched`` beyond one per accepted fix; history is unique);
* throughput: accepted per second, and stored per second while sending (enriched records
  seen, sampled every 0.5 s: a worker publishes a fix only after its history row committed);
* latency received → enriched on Kafka (fixes of the first ``--warmup`` seconds left out:
  the workers' plan caches start cold; also reported with them): the enriched record's
  producer timestamp minus the receiver's ``receivedAt`` (the worker publishes only after
  the history transaction committed, so it bounds received → history committed from
  above); p50/p95/p99;
* request latency (send → 2xx) and how far the senders fell behind schedule;
* CPU (cores used) and peak RSS per process (psutil).

The fleet's whole run is simulated before the clock starts (``record_reports``: the same
fixes at the same times), so that while it is measured the load generator, which shares the
two cores with the system, only sends; ``--simulate-live`` simulates while sending instead.
The simulated clock starts when sending does, so fix times trail the wall clock by the
seconds that took (like a phone's buffered fixes); latency is measured from ``receivedAt``.

Batches are forwarded as a gateway in front of the batch endpoint does
(``forward_as_gateway``): every report when it falls due, encoded in advance, in the next
NDJSON request, one request at a time so each device's fixes stay in order; a report's lag is
due → posted. ``--closed-loop`` has each driver wait for the answer to its previous report
instead (a phone's way): at 10 reports a second per driver that client cannot go faster than
its own round trip (~8,600/s with 1,000 drivers), whatever the server does.

``--drain`` sends with no worker running, then starts the workers and measures their CPU per
fix emptying the backlog (the workers' cost alone; batches are full, 2,000 records), over the
whole backlog and over its second half (``warm_*``: each route's plan, pieces and clock built
once by then, as they are for most of a working day).

``--find-max`` raises the rate step by step (× ``--step``, 1.5) until p99 passes 1 s, anything
is lost, fewer than 95 % of the fixes are accepted or the senders fall more than 1 s behind
schedule (p99), and reports the highest rate held for ``--duration`` seconds.

    .venv/bin/python -m bench.ingest --drivers 1000 --rate 1000 --duration 60
    .venv/bin/python -m bench.ingest --protocol batch --find-max --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer

from api.cli_history import ensure_history_drivers, learn_history, write_history
from bench.stats import percentile_or_none, reference_loop_ms
from infrastructure.event_loop import run as run_on_event_loop
from infrastructure.kafka import GPS_POSITIONS_ENRICHED, ensure_topics, reader_at_end
from infrastructure.postgres import connect
from infrastructure.progress import Progress
from infrastructure.settings import Settings
from simulator.driving import DrivingConfig
from simulator.fleet import Fleet, FleetConfig, RunStats, SimClock, build_fleet, drive_fleet
from simulator.history import HistoryConfig
from simulator.network import load_network
from simulator.protocols import HttpPoster, Sender
from simulator.replay import (
    DueReport,
    RecordedDriver,
    forward_as_gateway,
    record_reports,
    recorded_batch_reports,
)
from simulator.roads import load_road_edges
from simulator.run import RunOptions, prepare

ROOT = Path(__file__).resolve().parent.parent


def bench_settings(args: argparse.Namespace) -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "http_port": args.port,
            "pg": base.pg.model_copy(update={"database": args.database}),
            "kafka": base.kafka.model_copy(update={"topic_prefix": "bench."}),
            "redis": base.redis.model_copy(update={"key_prefix": "bench:"}),
            "ingest": base.ingest.model_copy(update={"osmand_port": args.osmand_port}),
        }
    )


def traccar_key(s: Settings) -> str:
    """The installation's Traccar key (.secrets.env): a running api refuses the public ones."""
    key = s.auth.traccar_api_key
    if key is None:
        raise SystemExit("no FLEETPULSE_AUTH__TRACCAR_API_KEY: run `fleetpulse stack up` first")
    return key.get_secret_value()


def child_env(s: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "FLEETPULSE_HTTP_PORT": str(s.http_port),
        "FLEETPULSE_PG__DATABASE": s.pg.database,
        "FLEETPULSE_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
        "FLEETPULSE_REDIS__KEY_PREFIX": s.redis.key_prefix,
        "FLEETPULSE_INGEST__OSMAND_PORT": str(s.ingest.osmand_port),
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }


async def prepare_database(s: Settings) -> None:
    """Create the bench database afresh, migrate it and load the demo data.

    Afresh: a worker that meets a driver for the first time re-labels the driver's stored day
    (``restore_states``), and the same simulated drivers' fixes of earlier runs that day made
    that a third of a drain's cost, growing with every run.
    """
    from infrastructure.migrate import migrate
    from infrastructure.seed import seed

    admin = await connect(s.pg, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{s.pg.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{s.pg.database}"')
    finally:
        await admin.close()
    conn = await connect(s.pg)
    try:
        await migrate(conn)
        await seed(conn)
    finally:
        await conn.close()
    await ensure_topics(s.kafka)


def start_processes(
    s: Settings, workers: int, logdir: Path, *, api: bool = True
) -> dict[str, subprocess.Popen[bytes]]:
    logdir.mkdir(parents=True, exist_ok=True)
    env = child_env(s)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    names = [("api", "api")] if api else []
    for name, cmd in names + [(f"worker{i + 1}", "worker") for i in range(workers)]:
        with open(logdir / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "api.cli", cmd],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    return procs


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


async def wait_ready(client: httpx.AsyncClient, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if (await client.get("/api/health")).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the api did not start; see the logs")
        await asyncio.sleep(0.5)


def _service_of(p: psutil.Process) -> str | None:
    """Which stack service a process belongs to (for the CPU split), if any."""
    try:
        name, cmd = p.name(), " ".join(p.cmdline())
    except psutil.Error:
        return None
    if name.startswith("postgres"):
        return "postgresql"
    if name.startswith("redis"):
        return "redis"
    if "java" in name and "kafka.Kafka" in cmd:
        return "kafka"
    return None


class ProcessMeter:
    """CPU seconds and peak RSS of the child processes and of this one; CPU of the stack's
    services (PostgreSQL backends, Kafka, Redis) and of the whole machine."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.ps = {n: psutil.Process(p.pid) for n, p in procs.items()}
        self.ps["bench (simulator)"] = psutil.Process()
        self.cpu0: dict[str, float] = {}
        self.rss: dict[str, int] = {}
        self.services0: dict[int, tuple[str, float]] = {}
        self.machine0 = psutil.cpu_times()
        self.t0 = 0.0

    def _services(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in psutil.process_iter():
            service = _service_of(p)
            if service is not None:
                with contextlib.suppress(psutil.Error):
                    out[p.pid] = (service, sum(p.cpu_times()[:2]))
        return out

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.rss = {}
        self.cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in self.ps.items()}
        self.services0 = self._services()
        self.machine0 = psutil.cpu_times()

    def sample(self) -> None:
        for n, p in self.ps.items():
            with contextlib.suppress(psutil.Error):
                self.rss[n] = max(self.rss.get(n, 0), p.memory_info().rss)

    def report(self) -> dict[str, Any]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        out = {}
        for n, p in self.ps.items():
            try:
                cpu = sum(p.cpu_times()[:2]) - self.cpu0[n]
            except psutil.Error:
                continue
            out[n] = {
                "cpu_cores": round(cpu / wall, 2),
                "rss_mb": round(self.rss.get(n, 0) / 2**20),
            }
        # a backend that started during the window counts from zero
        used: dict[str, float] = {}
        for pid, (service, cpu) in self._services().items():
            used[service] = used.get(service, 0.0) + cpu - self.services0.get(pid, ("", 0.0))[1]
        for service, cpu in sorted(used.items()):
            out[service] = {"cpu_cores": round(cpu / wall, 2)}
        now = psutil.cpu_times()
        busy = (now.user + now.system) - (self.machine0.user + self.machine0.system)
        out["machine"] = {"cpu_cores": round(busy / wall, 2), "of": psutil.cpu_count()}
        return out


@dataclasses.dataclass
class Step:
    """One step's fleet and its reports made in advance (none with ``--simulate-live``):
    per driver, or in the order they fall due and encoded, for the gateway."""

    start_ms: int
    fleet: Fleet
    drivers: list[RecordedDriver] | None
    due: list[DueReport] | None

    async def send(self, sender: Sender) -> RunStats:
        clock = SimClock(self.start_ms, 1.0)
        if self.due is not None:
            return await forward_as_gateway(self.due, sender, clock)
        return await drive_fleet(self.fleet, sender, clock, drivers=self.drivers)


async def step_fleet(args: argparse.Namespace, fleet_cfg: FleetConfig, rate: float) -> Step:
    """The fleet of one step at ``rate``, its start, and its reports made in advance (unless
    ``--simulate-live``): batches go through a gateway unless ``--closed-loop``."""
    cfg = dataclasses.replace(
        fleet_cfg,
        interval_s=args.drivers / rate,
        duration_s=float(args.duration),
        speedup=1.0,
        start_spread_s=0.0,
    )
    start_ms = int(time.time() * 1000)
    with Progress(f"step at {rate:,.0f}/s: building the fleet"):
        fleet = await asyncio.to_thread(build_fleet, cfg, start_ms)
    if args.simulate_live:
        return Step(start_ms, fleet, None, None)
    with Progress(f"step at {rate:,.0f}/s: recording the fleet's reports in advance"):
        recorded = await asyncio.to_thread(record_reports, fleet)
    drivers: list[RecordedDriver] | None = recorded
    due = None
    if args.protocol == "batch" and not args.closed_loop:
        with Progress(f"step at {rate:,.0f}/s: encoding the batches"):
            due = await asyncio.to_thread(recorded_batch_reports, fleet, recorded)
        drivers = None
        del recorded  # the batches hold what is needed
    # Millions of recorded fixes live until the step ends: out of the collector's sight, or
    # each full collection walks them all while the step is measured.
    gc.collect()
    gc.freeze()
    return Step(start_ms, fleet, drivers, due)


def gateway_sender(
    s: Settings, args: argparse.Namespace, ingest_base: str
) -> tuple[HttpPoster, Sender]:
    """The load generator's connection pool and sender (close the pool when done)."""
    poster = HttpPoster(ingest_base, connections=args.concurrency)
    sender = Sender(
        poster,
        args.protocol,
        osmand_url="/",
        api_key=traccar_key(s),
        max_in_flight=args.concurrency,
    )
    return poster, sender


async def enriched_consumer_at_end(s: Settings) -> AIOKafkaConsumer:
    """A consumer of ``gps.positions.enriched`` positioned at its end: it sees what follows."""
    return await reader_at_end(s.kafka, s.kafka.topic(GPS_POSITIONS_ENRICHED))


async def run_step(
    s: Settings,
    args: argparse.Namespace,
    fleet_cfg: FleetConfig,
    client: httpx.AsyncClient,
    ingest_base: str,
    meter: ProcessMeter,
    driver_ids: list[str],
    rate: float,
) -> dict[str, Any]:
    """Drive the fleet at ``rate`` positions/s for the duration and measure."""
    interval = args.drivers / rate
    step = await step_fleet(args, fleet_cfg, rate)
    reference_ms = reference_loop_ms()
    start_ms = step.start_ms
    consumer = await enriched_consumer_at_end(s)
    latencies: list[float] = []  # after the warm-up (plan caches are cold before)
    all_latencies: list[float] = []
    by_window: dict[int, list[float]] = {}  # by 10 s of receivedAt: where in the run the tail is
    seen: dict[tuple[str, int], int] = {}
    stop_consumer = asyncio.Event()

    async def consume() -> None:
        while not stop_consumer.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for r in records:
                    m = orjson.loads(r.value)
                    if m.get("fixTimeMs", 0) < start_ms:
                        continue
                    key = (m["deviceId"], m["fixTimeMs"])
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] == 1:
                        received_ms = _iso_to_ms(m["receivedAt"])
                        latency = r.timestamp - received_ms
                        all_latencies.append(latency)
                        by_window.setdefault((received_ms - start_ms) // 10_000, []).append(latency)
                        if m["fixTimeMs"] >= start_ms + args.warmup * 1000:
                            latencies.append(latency)

    conn = await connect(s.pg)
    stored_curve: list[tuple[float, int]] = []

    conn_lock = asyncio.Lock()  # the poller and the drain loop share the connection

    async def count() -> int:
        async with conn_lock:
            return await _count()

    async def _count() -> int:
        return int(
            await conn.fetchval(
                """SELECT count(*) FROM positions WHERE driver_id = ANY($1::uuid[])
                   AND fix_time >= to_timestamp($2 / 1000.0)""",
                driver_ids,
                start_ms,
            )
        )

    async def poll(stop: asyncio.Event) -> None:
        # Workers publish a fix only after its history row committed, so the enriched records
        # seen are the stored curve (a lower bound); counting rows in PostgreSQL every 0.5 s
        # cost it ~60 ms a query, and that CPU landed in the measured figures.
        while not stop.is_set():
            stored_curve.append((time.monotonic(), len(seen)))
            meter.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    poster, sender = gateway_sender(s, args, ingest_base)
    consumer_task = asyncio.create_task(consume())
    stop_poll = asyncio.Event()
    poll_task = asyncio.create_task(poll(stop_poll))
    meter.start()
    t0 = time.monotonic()
    try:
        stats = await step.send(sender)
    finally:
        await poster.close()
    send_wall = time.monotonic() - t0
    processes = meter.report()
    # drain: wait until everything accepted is stored and enriched (or 120 s)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if await count() >= sender.stats.accepted and len(seen) >= sender.stats.accepted:
            break
        await asyncio.sleep(0.5)
    stored = await count()
    drained_wall = time.monotonic() - t0
    stop_poll.set()
    await poll_task
    await asyncio.sleep(1.0)
    stop_consumer.set()
    await consumer_task
    await consumer.stop()
    await conn.close()
    # stored/s while sending: rows gained between 10% and 100% of the send window
    in_window = [(t, n) for t, n in stored_curve if t0 + 0.1 * send_wall <= t <= t0 + send_wall]
    stored_rate = None
    if len(in_window) >= 2:
        (ta, na), (tb, nb) = in_window[0], in_window[-1]
        stored_rate = round((nb - na) / max(tb - ta, 1e-9))
    st = sender.stats
    dupes = sum(c - 1 for c in seen.values() if c > 1)
    return {
        "protocol": args.protocol,
        # a gateway forwarding what falls due, or every driver waiting for its answer
        "client": "gateway" if step.due is not None else "closed loop",
        "drivers": args.drivers,
        "target_rate": rate,
        "interval_s": round(interval, 3),
        "duration_s": args.duration,
        "sent": st.sent,
        "accepted": st.accepted,
        "rejected": st.rejected,
        "retries": st.retries,
        "requests": st.requests,
        "stored": stored,
        "lost": st.accepted - stored,
        "enriched_seen": len(seen),
        "duplicates_on_enriched_topic": dupes,
        "accepted_per_s": round(st.accepted / send_wall),
        "stored_per_s_while_sending": stored_rate,
        "all_stored_after_s": round(drained_wall, 1),
        "latency_received_to_enriched_ms": {
            "p50": percentile_or_none(latencies, 0.5),
            "p95": percentile_or_none(latencies, 0.95),
            "p99": percentile_or_none(latencies, 0.99),
            "max": percentile_or_none(latencies, 1.0),
        },
        "latency_including_warmup_ms": {
            "p50": percentile_or_none(all_latencies, 0.5),
            "p99": percentile_or_none(all_latencies, 0.99),
        },
        "latency_p50_p99_by_10s": [
            (percentile_or_none(by_window[w], 0.5), percentile_or_none(by_window[w], 0.99))
            for w in sorted(by_window)
        ],
        "request_latency_ms": {
            "p50": percentile_or_none(st.ack_ms, 0.5),
            "p99": percentile_or_none(st.ack_ms, 0.99),
        },
        "sender_lag_s": stats.lag_summary(),
        "processes": processes,
        # the machine's speed just before the step (bench.stats.reference_loop_ms; lower is
        # faster): the same command's figures move with it
        "reference_loop_ms": reference_ms,
    }


async def learn_bench_history(
    s: Settings, client: httpx.AsyncClient, args: argparse.Namespace, fleet_cfg: FleetConfig
) -> dict[str, Any]:
    """A short past on the fleet's network, map-matched and summed into ``edge_speeds_1h``,
    so that the workers' ETA runs on learned speeds as it does for a fleet with history (the
    pace of every fix, each route's clock by hour): without it every route's clock runs at
    the planning speed, the cheap path. Written before any fix is sent: each worker loads
    the profile at its first batch."""
    opts = RunOptions(fleet=fleet_cfg)
    past = HistoryConfig(
        fleet=dataclasses.replace(
            fleet_cfg, drivers=args.history_drivers, device_prefix="BENCHPAST", interval_s=5.0
        ),
        weeks=args.history_days / 7,
    )
    net = await asyncio.to_thread(load_network, fleet_cfg.network)
    t0 = time.monotonic()
    ids = await ensure_history_drivers(
        client, past, email=opts.email, password=opts.password, tenant=opts.tenant
    )
    conn = await connect(s.pg)
    try:
        await load_road_edges(conn, net)
        written = await write_history(conn, past, ids, tenant=opts.tenant, net=net)
        matched = await learn_history(conn, past, net)
    finally:
        await conn.close()
    return {
        "history_fixes": written.fixes,
        "traversals": sum(m.traversals for m in matched),
        "seconds": round(time.monotonic() - t0, 1),
    }


async def run_drain(
    s: Settings,
    args: argparse.Namespace,
    fleet_cfg: FleetConfig,
    ingest_base: str,
    procs: dict[str, subprocess.Popen[bytes]],
    logdir: Path,
) -> dict[str, Any]:
    """Fill ``gps.positions`` while no worker runs, then start the workers and measure the
    CPU they spend per fix emptying it: the workers' cost alone, without the api, the load
    generator and the services competing for the same cores (a noisy figure on 2 cores)."""
    step = await step_fleet(args, fleet_cfg, args.rate)
    start_ms = step.start_ms
    poster, sender = gateway_sender(s, args, ingest_base)
    try:
        await step.send(sender)
    finally:
        await poster.close()
    accepted = sender.stats.accepted
    consumer = await enriched_consumer_at_end(s)
    workers = start_processes(s, args.workers, logdir, api=False)
    procs.update(workers)
    ps = [psutil.Process(p.pid) for p in workers.values()]

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in ps)

    seen = 0
    first: tuple[float, float, int] | None = None  # (wall, cpu, seen) at the first record
    # the second half of the backlog: every driver's plan, route pieces and clock are built
    # by then, which a worker pays once per route (and a day has far more than 100 fixes
    # per driver)
    half: tuple[float, float, int] | None = None
    deadline = time.monotonic() + 600
    try:
        while seen < accepted and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for r in records:
                    if orjson.loads(r.value).get("fixTimeMs", 0) >= start_ms:
                        seen += 1
            if first is None and seen:
                # from here on: the workers' start-up (imports, connections) is behind them
                first = (time.monotonic(), cpu(), seen)
            if half is None and seen >= accepted // 2:
                half = (time.monotonic(), cpu(), seen)
        end = (time.monotonic(), cpu(), seen)
    finally:
        await consumer.stop()
    assert first is not None, "the workers published nothing; see their logs"
    fixes = end[2] - first[2]
    warm = None if half is None else end[2] - half[2]
    return {
        "mode": "drain",
        "protocol": args.protocol,
        "workers": args.workers,
        "accepted": accepted,
        "enriched_seen": seen,
        "lost": accepted - seen,
        "measured_fixes": fixes,
        "worker_cpu_us_per_fix": round((end[1] - first[1]) / max(fixes, 1) * 1e6, 1),
        "drain_fixes_per_s": round(fixes / max(end[0] - first[0], 1e-9)),
        "warm_fixes": warm,
        "warm_worker_cpu_us_per_fix": None
        if half is None or not warm
        else round((end[1] - half[1]) / warm * 1e6, 1),
        "warm_drain_fixes_per_s": None
        if half is None or not warm
        else round(warm / max(end[0] - half[0], 1e-9)),
    }


_last_iso: tuple[str, int] = ("", 0)


def _iso_to_ms(text: str) -> int:
    # the fixes of one request share their receive time: parsed once (the bench's CPU is on
    # the measured machine too)
    global _last_iso
    if _last_iso[0] != text:
        _last_iso = (text, int(datetime.fromisoformat(text).timestamp() * 1000))  # "Z" too
    return _last_iso[1]


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    s = bench_settings(args)
    await prepare_database(s)
    logdir = ROOT / ".stack" / "bench-ingest"
    procs = start_processes(s, 0 if args.drain else args.workers, logdir)
    results: list[dict[str, Any]] = []
    try:
        base = f"http://127.0.0.1:{s.http_port}"
        ingest_base = base if args.protocol != "osmand" else f"http://127.0.0.1:{args.osmand_port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            await wait_ready(client)
            fleet_cfg = FleetConfig(
                drivers=args.drivers,
                seed=args.seed,
                device_prefix="BENCH",
                min_stops=8,
                max_stops=12,
                driving=DrivingConfig(dropout_prob=0.0, buffer_prob=0.0),
            )
            conn = await connect(s.pg)
            try:
                t = time.monotonic()
                fleet = await asyncio.to_thread(build_fleet, fleet_cfg, int(time.time() * 1000))
                driver_ids, _ = await prepare(client, conn, RunOptions(fleet=fleet_cfg), fleet)
                setup_s = time.monotonic() - t
            finally:
                await conn.close()
            sys.stderr.write(f"set-up through the API: {setup_s:.1f} s\n")
            if args.history_days > 0 and args.history_drivers > 0:
                learned = await learn_bench_history(s, client, args, fleet_cfg)
                sys.stderr.write(f"learned speeds: {json.dumps(learned)}\n")
                results.append({"learned_speeds": learned})
            if args.drain:
                results.append(await run_drain(s, args, fleet_cfg, ingest_base, procs, logdir))
                return results
            meter = ProcessMeter(procs)
            rate = args.rate
            best: dict[str, Any] | None = None
            while True:
                r = await run_step(
                    s, args, fleet_cfg, client, ingest_base, meter, list(driver_ids.values()), rate
                )
                results.append(r)
                sys.stderr.write(json.dumps(r) + "\n")
                if not args.find_max:
                    break
                p99 = r["latency_received_to_enriched_ms"]["p99"] or 0
                held = (
                    r["lost"] == 0
                    and r["rejected"] == 0
                    and p99 <= 1000
                    and r["accepted_per_s"] >= 0.95 * rate
                    # the fleet reported on schedule: senders that drift behind are a backlog
                    # building up, not a rate being held
                    and r["sender_lag_s"]["p99"] <= 1.0
                )
                if not held:
                    break
                best = r
                rate = round(rate * args.step)
            if args.find_max:
                results.append(
                    {"find_max": args.protocol, "highest_rate_held": best and best["target_rate"]}
                )
    finally:
        stop_processes(procs)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--drivers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=1000.0, help="positions per second, total")
    p.add_argument("--duration", type=int, default=60, help="seconds of sending per step")
    p.add_argument("--protocol", choices=["osmand", "traccar", "batch"], default="osmand")
    p.add_argument("--workers", type=int, default=2, help="enrichment worker processes")
    p.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight")
    p.add_argument("--find-max", action="store_true")
    p.add_argument(
        "--simulate-live",
        action="store_true",
        help="simulate while sending (default: drive the run in advance, then only send)",
    )
    p.add_argument(
        "--closed-loop",
        action="store_true",
        help="batch: each driver waits for its report's answer (default: a gateway forwards)",
    )
    p.add_argument(
        "--drain",
        action="store_true",
        help="send with no worker running, then measure the workers' CPU per fix emptying it",
    )
    p.add_argument("--step", type=float, default=1.5, help="--find-max: rate factor per step")
    p.add_argument(
        "--warmup", type=float, default=20.0, help="seconds of fixes left out of the latency"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--history-days",
        type=int,
        default=7,
        help="days of past driving to learn speeds from before the run (0: none, planning speed)",
    )
    p.add_argument("--history-drivers", type=int, default=5, help="drivers of that past")
    p.add_argument("--database", default="fp_bench_ingest")
    p.add_argument("--port", type=int, default=8190)
    p.add_argument("--osmand-port", type=int, default=5190)
    args = p.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally block stops the api and workers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run_on_event_loop(main_async(args))
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))


if __name__ == "__main__":
    main()
