"""Ingest over HTTP, end to end: receivers -> Kafka -> enrichment workers -> history.

Starts its own ``fleetpulse api`` and N ``fleetpulse worker`` processes against the local
stack's dev database, isolated by a run-specific Kafka topic prefix and Redis key prefix,
registers its own bench drivers (tenant-1), then sends positions in two phases:

* ``osmand``: one position per request, a form POST to the OsmAnd port like Traccar Client;
* ``batch``: NDJSON batches to ``POST /api/positions/batch``;

with C concurrent connections (OsmAnd; a minimal keep-alive client, so the client's own CPU
does not dominate on a 2-core machine) and B batches in flight; a request answered 503 is
retried like a real sender would (up to 5 times). It reports, as JSON: accepted/s (answered
2xx), end-to-end throughput (accepted -> rows in ``positions``), p50/p99 request latency,
loss (accepted but not stored, compared fix by fix) and duplicates (records on Kafka beyond
the accepted ones, e.g. from a 503 whose records did reach Kafka; history rows beyond
distinct fixes). Everything it created (drivers, their rows, topics, Redis keys) is removed
at the end.

    .venv/bin/python -m bench.ingest_http --positions 20000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.stats import percentile_or_none
from infrastructure.kafka import GPS_POSITIONS, delete_topics, end_offsets, ensure_topics
from infrastructure.postgres import connect
from infrastructure.redis import create_redis
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TENANT = "tenant-1"
LAT0, LON0 = 40.7128, -74.0060


@dataclass
class Phase:
    name: str
    sent: int = 0
    accepted: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0
    answered: float = 0.0
    stored_at: float = 0.0
    rows: int = 0
    distinct_rows: int = 0
    kafka_records: int = 0
    retries: int = 0
    accepted_keys: set[tuple[str, int]] = field(default_factory=set)
    lost: int = 0

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        send_s = self.answered - self.started
        e2e_s = (self.stored_at or time.monotonic()) - self.started
        return {
            "phase": self.name,
            "positions_sent": self.sent,
            "accepted": self.accepted,
            "failed": self.failed,
            "requests": len(lat),
            "send_seconds": round(send_s, 2),
            "accepted_per_s": round(self.accepted / send_s, 1) if send_s else None,
            "end_to_end_seconds": round(e2e_s, 2),
            "end_to_end_per_s": round(self.rows / e2e_s, 1) if e2e_s else None,
            "latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
            "latency_ms_p99": percentile_or_none(lat, 0.99, 2),
            "rows_in_history": self.rows,
            "retried_requests_after_503": self.retries,
            "lost": self.lost,
            "duplicate_rows": self.rows - self.distinct_rows,
            "kafka_records_beyond_accepted": self.kafka_records - self.accepted,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args], env=env, cwd=ROOT, stdout=out, stderr=out
        )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


async def wait_ready(http: httpx.AsyncClient, url: str, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await http.get(url)).status_code in (200, 400):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {within}s")


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client: on a 2-core machine httpx's own CPU cost per
    request would be measured instead of the server's."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        length, close = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        content = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return int(status_line.split()[1]), content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def run_requests(phase: Phase, requests: list[Req], concurrency: int) -> None:
    """POST the requests with ``concurrency`` connections in flight; like a real sender,
    retry a request answered 503 (or cut off) up to 5 times."""
    queue: asyncio.Queue[tuple[Req, int]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait((r, 0))

    async def worker() -> None:
        conn: RawHttp | None = None
        while True:
            try:
                req, attempt = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            url, body, headers, n = req.url, req.body, req.headers, len(req.keys)
            parsed = httpx.URL(url)
            conn = conn or RawHttp(parsed.host, parsed.port or 80)
            t0 = time.perf_counter()
            try:
                status, content = await conn.post(parsed.raw_path.decode(), body, headers)
            except (OSError, asyncio.IncompleteReadError) as exc:
                await conn.close()
                status, content = 0, type(exc).__name__.encode()
            phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
            if status in (0, 503) and attempt < 5:
                phase.retries += 1
                await asyncio.sleep(0.5)
                queue.put_nowait((req, attempt + 1))
                continue
            phase.sent += n
            if status == 200:
                accepted = orjson.loads(content)["accepted"] if content else n
                phase.accepted += accepted
                if accepted == n:
                    phase.accepted_keys.update(req.keys)
                else:
                    rejected = phase.failed.get("rejected_lines", 0) + n - accepted
                    phase.failed["rejected_lines"] = rejected
            else:
                key = str(status) if status else content.decode()
                phase.failed[key] = phase.failed.get(key, 0) + n
        if conn is not None:
            await conn.close()

    phase.started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.answered = time.monotonic()


async def wait_stored(
    conn: asyncpg.Connection, phase: Phase, prefix: str, t_from: datetime, t_to: datetime
) -> None:
    """Poll history until it holds every accepted position (or stops growing for 60 s)."""
    last, last_change = -1, time.monotonic()
    while True:
        rows = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE tenant_id = $1 AND fix_time >= $2"
            " AND fix_time < $3 AND device_unique_id LIKE $4",
            TENANT,
            t_from,
            t_to,
            prefix + "%",
        )
        if rows != last:
            last, last_change = rows, time.monotonic()
            phase.stored_at = last_change
        if rows >= phase.accepted or time.monotonic() - last_change > 60:
            break
        await asyncio.sleep(0.25)
    phase.rows = last
    stored = await conn.fetch(
        "SELECT device_unique_id, (extract(epoch FROM fix_time) * 1000)::bigint AS ms"
        " FROM positions WHERE tenant_id = $1 AND fix_time >= $2 AND fix_time < $3"
        " AND device_unique_id LIKE $4",
        TENANT,
        t_from,
        t_to,
        prefix + "%",
    )
    keys = {(r["device_unique_id"], r["ms"]) for r in stored}
    phase.distinct_rows = len(keys)
    phase.lost = len(phase.accepted_keys - keys)


@dataclass(frozen=True)
class Req:
    url: str
    body: bytes
    headers: dict[str, str]
    keys: list[tuple[str, int]]  # (device, fix time ms) of the positions it carries


def osmand_requests(devices: list[str], n: int, base_s: int, port: int) -> list[Req]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    out = []
    for i in range(n):
        dev, k = devices[i % len(devices)], i // len(devices)
        form = (
            f"id={dev}&lat={LAT0 + k * 1e-5:.6f}&lon={LON0 + (i % 97) * 1e-5:.6f}"
            f"&timestamp={base_s + k}&speed=12.5&bearing=90&altitude=10&accuracy=5&batt=80"
        )
        out.append(
            Req(f"http://127.0.0.1:{port}/", form.encode(), headers, [(dev, (base_s + k) * 1000)])
        )
    return out


def batch_requests(
    devices: list[str], n: int, base_ms: int, port: int, size: int, key: str
) -> list[Req]:
    headers = {"Content-Type": "application/x-ndjson", "X-API-Key": key}
    lines, keys = [], []
    for i in range(n):
        dev, k = devices[i % len(devices)], i // len(devices)
        keys.append((dev, base_ms + k * 1000))
        lines.append(
            orjson.dumps(
                {
                    "deviceId": dev,
                    "fixTime": base_ms + k * 1000,
                    "lat": LAT0 + k * 1e-5,
                    "lon": LON0 + (i % 97) * 1e-5,
                    "speed": 23.1,
                    "course": 90,
                    "attributes": {"batteryLevel": 80},
                }
            )
        )
    url = f"http://127.0.0.1:{port}/api/positions/batch"
    return [
        Req(url, b"\n".join(lines[j : j + size]), headers, keys[j : j + size])
        for j in range(0, n, size)
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=20_000, help="per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="OsmAnd connections")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--phases", default="osmand,batch")
    args = parser.parse_args()

    settings = Settings()
    run = uuid.uuid4().hex[:6]
    topic_prefix, redis_prefix, dev_prefix = f"bench-{run}.", f"bench:{run}:", f"BENCH-{run}-"
    api_port, osmand_port = free_port(), free_port()
    env = {
        **os.environ,
        "FLEETPULSE_KAFKA__TOPIC_PREFIX": topic_prefix,
        "FLEETPULSE_REDIS__KEY_PREFIX": redis_prefix,
        "FLEETPULSE_HTTP_HOST": "127.0.0.1",
        "FLEETPULSE_HTTP_PORT": str(api_port),
        "FLEETPULSE_INGEST__OSMAND_PORT": str(osmand_port),
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    kafka = settings.kafka.model_copy(update={"topic_prefix": topic_prefix})
    await ensure_topics(kafka)
    conn = await connect(settings.pg)
    devices = [f"{dev_prefix}{i:04d}" for i in range(args.devices)]
    await conn.executemany(
        "INSERT INTO drivers (tenant_id, name, device_unique_id) VALUES ($1, $2, $3)",
        [(TENANT, f"bench {d}", d) for d in devices],
    )
    log = ROOT / ".stack" / f"bench-ingest-{run}.log"
    log.parent.mkdir(exist_ok=True)
    procs = [start(["api"], env, log)] + [start(["worker"], env, log) for _ in range(args.workers)]
    results: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient() as http:
            await wait_ready(http, f"http://127.0.0.1:{api_port}/api/health/ready")
            await wait_ready(http, f"http://127.0.0.1:{osmand_port}/")
        now_s = int(time.time())
        for index, name in enumerate(args.phases.split(",")):
            # Each phase writes its own hour, 2..3 hours ago (distinct fix times per device).
            base_s = now_s - 3 * 3600 + index * 3600
            phase = Phase(name)
            before = await end_offsets(kafka, GPS_POSITIONS)
            if name == "osmand":
                reqs = osmand_requests(devices, args.positions, base_s, osmand_port)
            else:
                reqs = batch_requests(
                    devices,
                    args.positions,
                    base_s * 1000,
                    api_port,
                    args.batch_size,
                    settings.auth.traccar_api_key.get_secret_value()
                    if settings.auth.traccar_api_key
                    else "",
                )
            concurrency = args.concurrency if name == "osmand" else args.batch_concurrency
            await run_requests(phase, reqs, concurrency)
            after = await end_offsets(kafka, GPS_POSITIONS)
            phase.kafka_records = sum(after.values()) - sum(before.values())
            await wait_stored(
                conn,
                phase,
                dev_prefix,
                datetime.fromtimestamp(base_s, tz=UTC),
                datetime.fromtimestamp(base_s + 3600, tz=UTC),
            )
            results.append(phase.report())
    finally:
        stop(procs)
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM drivers WHERE device_unique_id LIKE $1", dev_prefix + "%"
        )]  # fmt: skip
        await conn.execute("DELETE FROM positions WHERE driver_id = ANY($1)", ids)
        for table in ("driver_positions", "geofence_states"):
            with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
                await conn.execute(f"DELETE FROM {table} WHERE driver_id = ANY($1)", ids)
        await conn.execute("DELETE FROM drivers WHERE id = ANY($1)", ids)
        await conn.close()
        with contextlib.suppress(Exception):
            await delete_topics(kafka, topic_prefix)
        redis = create_redis(settings.redis)
        async for key in redis.scan_iter(match=f"{redis_prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    print(
        json.dumps(
            {
                "bench": "ingest_http",
                "positions_per_phase": args.positions,
                "concurrency": args.concurrency,
                "batch_concurrency": args.batch_concurrency,
                "devices": args.devices,
                "workers": args.workers,
                "batch_size": args.batch_size,
                "cpus": os.cpu_count(),
                "results": results,
                "log": str(log),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
