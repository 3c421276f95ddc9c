"""The private fault stack, real `fleetpulse api` / `fleetpulse worker` processes, a load
generator with exact accounting, and a socket.io viewer that timestamps what it receives.

Everything here talks to a second instance of the local stack (root ``.stack-faults/``, ports
15433 / 16380 / 19092 / 19093), started by the project's own stack manager, so the faults it
injects never touch the shared stack other runs use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import socketio

from infrastructure.settings import PROJECT_ROOT, Settings
from tests.conftest import TEST_JWT_SECRET, TEST_TRACCAR_KEY, pinned_auth

RUN_ID = uuid.uuid4().hex[:8]
FAULT_ROOT = PROJECT_ROOT / ".stack-faults"
FAULT_SERVICES = ["postgres", "redis", "kafka"]
NS = "/tracking"
FLEET_TENANT = "tenant-1"
FLEET_SIZE = 48  # devices FLT001..FLT048: keys spread over all 6 partitions
# Scenario i writes fix times in [ANCHOR - i days, ANCHOR - (i - 1) days): disjoint windows.
ANCHOR_MS = (int(time.time()) - 7200) * 1000


def window_base_ms(index: int) -> int:
    """Where scenario ``index`` (1, 2, ...) starts its fix times."""
    return ANCHOR_MS - index * 86_400_000


def fault_settings() -> Settings:
    """Settings of the private fault stack and of this run's isolated names on it."""
    base = Settings()
    return base.model_copy(
        update={
            "environment": "test",
            "log_level": "WARNING",
            "pg": base.pg.model_copy(update={"port": 15433, "database": f"fp_faults_{RUN_ID}"}),
            "redis": base.redis.model_copy(
                update={"port": 16380, "key_prefix": f"faults:{RUN_ID}:"}
            ),
            "mariadb": base.mariadb.model_copy(update={"port": 13307}),
            "kafka": base.kafka.model_copy(
                update={
                    "bootstrap_servers": "127.0.0.1:19092",
                    "topic_prefix": f"faults-{RUN_ID}.",
                    "produce_timeout_s": 3.0,
                }
            ),
            "cdc": base.cdc.model_copy(update={"connect_url": "http://127.0.0.1:18083"}),
            "ingest": base.ingest.model_copy(update={"osmand_port": 0}),
            "live": base.live.model_copy(update={"batch_interval_ms": 200}),
            "auth": pinned_auth(base.auth),
            "stack": base.stack.model_copy(
                update={
                    "root": FAULT_ROOT,
                    "kafka_controller_port": 19093,
                    "kafka_heap_max": "512m",
                }
            ),
        }
    )


def process_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child `fleetpulse` process use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env.update(
        {
            "FLEETPULSE_ENVIRONMENT": settings.environment,
            "FLEETPULSE_AUTH__JWT_SECRET": TEST_JWT_SECRET,
            "FLEETPULSE_AUTH__TRACCAR_API_KEY": TEST_TRACCAR_KEY,
            "FLEETPULSE_LOG_LEVEL": settings.log_level,
            "FLEETPULSE_PG__PORT": str(settings.pg.port),
            "FLEETPULSE_PG__DATABASE": settings.pg.database,
            "FLEETPULSE_REDIS__PORT": str(settings.redis.port),
            "FLEETPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "FLEETPULSE_MARIADB__PORT": str(settings.mariadb.port),
            "FLEETPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "FLEETPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "FLEETPULSE_KAFKA__PRODUCE_TIMEOUT_S": str(settings.kafka.produce_timeout_s),
            "FLEETPULSE_CDC__CONNECT_URL": settings.cdc.connect_url,
            "FLEETPULSE_INGEST__OSMAND_PORT": str(settings.ingest.osmand_port),
            "FLEETPULSE_LIVE__BATCH_INTERVAL_MS": str(settings.live.batch_interval_ms),
            "FLEETPULSE_STACK__ROOT": str(settings.stack.root),
            "FLEETPULSE_STACK__KAFKA_CONTROLLER_PORT": str(settings.stack.kafka_controller_port),
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fleet_devices() -> list[str]:
    return [f"FLT{i:03d}" for i in range(1, FLEET_SIZE + 1)]


async def add_fleet_drivers(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        """INSERT INTO drivers (tenant_id, name, device_unique_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        [(FLEET_TENANT, f"fault van {d}", d) for d in fleet_devices()],
    )


@dataclass
class Proc:
    kind: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    async def wait_exit(self, within: float = 30.0) -> int:
        deadline = time.monotonic() + within
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                return await asyncio.to_thread(self.popen.wait, 10)
            await asyncio.sleep(0.1)
        return self.popen.returncode


class Fleet:
    """`fleetpulse api` and `fleetpulse worker` child processes on the fault stack."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self._count = 0

    def _spawn(self, kind: str, args: list[str], port: int | None = None) -> Proc:
        self._count += 1
        log_path = self.log_dir / f"{kind}-{self._count}.log"
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                [sys.executable, "-m", "api.cli", kind, *args],
                env=process_env(self.settings),
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(kind, popen, port)
        self.procs.append(proc)
        return proc

    async def start_api(self, port: int | None = None) -> Proc:
        port = port or free_port()
        proc = self._spawn("api", ["--host", "127.0.0.1", "--port", str(port)], port)
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 90
            while True:
                assert proc.popen.poll() is None, f"api exited: see {self.log_dir}"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{proc.url}/api/health/ready")).status_code == 200:
                        return proc
                assert time.monotonic() < deadline, "api not ready within 90 s"
                await asyncio.sleep(0.3)

    def start_worker(self) -> Proc:
        return self._spawn("worker", [])

    def alive(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind and p.popen.poll() is None]

    async def stop_all(self) -> None:
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        for proc in self.procs:
            await proc.wait_exit(30)


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of the load generator: when sent and answered, and the status
    (0 for a transport error: connection refused or reset, timeout)."""

    sent: float
    answered: float
    status: int
    url: str


@dataclass
class Load:
    """Senders posting NDJSON batches to POST /api/positions/batch at a steady rate.

    Every position has a fix time ``base_ms + seq`` (a global sequence), so each is distinct
    and orderable. A batch answered 503 or lost to a transport error is re-sent (to the next
    api on a transport error) until it is accepted, as a device or gateway would: at the end
    every position generated has been accepted by exactly one 2xx, and ``accepted`` holds
    them all.
    """

    urls: list[str]
    devices: list[str]
    base_ms: int
    api_key: str = "traccar-shared-key"
    rate: float = 500.0  # positions per second over all senders
    batch: int = 25
    senders: int = 4
    seq: int = 0
    accepted: set[tuple[str, int]] = field(default_factory=set)
    accepted_at: list[tuple[float, int]] = field(default_factory=list)  # (time, last seq)
    attempts: list[Attempt] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=2.0))
        self._tasks = [asyncio.create_task(self._sender(i)) for i in range(self.senders)]

    async def stop(self, within: float = 120.0) -> None:
        """Stop generating; wait until every generated batch has been accepted."""
        self._stop.set()
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*self._tasks)
        finally:
            await self._http.aclose()

    def fix_ms(self, seq: int) -> int:
        return self.base_ms + seq

    def _next(self) -> list[tuple[str, int]]:
        out = []
        for _ in range(self.batch):
            self.seq += 1
            out.append((self.devices[self.seq % len(self.devices)], self.fix_ms(self.seq)))
        return out

    def _body(self, items: list[tuple[str, int]]) -> bytes:
        lines = []
        for device, ms in items:
            n = int(device[3:])
            line = {
                "deviceId": device,
                "fixTime": ms,
                "lat": 60.10 + n * 0.002,
                "lon": 24.80 + (ms % 3_600_000) * 1e-8,
                "speed": 18.0,
                "course": 90,
                "accuracy": 8,
            }
            lines.append(orjson.dumps(line))
        return b"\n".join(lines)

    async def _sender(self, index: int) -> None:
        period = self.batch * self.senders / self.rate
        api = index % len(self.urls)
        next_at = time.monotonic()
        while not self._stop.is_set():
            items = self._next()
            api = await self._deliver(items, api)
            next_at = max(next_at + period, time.monotonic() - period)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _deliver(self, items: list[tuple[str, int]], api: int) -> int:
        body = self._body(items)
        headers = {"X-API-Key": self.api_key, "Content-Type": "application/x-ndjson"}
        while True:
            url = self.urls[api]
            sent = time.monotonic()
            try:
                resp = await self._http.post(
                    f"{url}/api/positions/batch", content=body, headers=headers
                )
                status = resp.status_code
            except httpx.TransportError:
                status = 0
            answered = time.monotonic()
            self.attempts.append(Attempt(sent, answered, status, url))
            if status == 200:
                got = resp.json()
                if got != {"accepted": len(items), "rejected": []}:
                    self.unexpected.append(f"200 with {got}")
                self.accepted.update(items)
                self.accepted_at.append((answered, max(ms for _, ms in items) - self.base_ms))
                return api
            if status == 0:
                api = (api + 1) % len(self.urls)  # this api is gone: retry on the next one
            elif status != 503:
                self.unexpected.append(f"{status}: {resp.text[:200]}")
            await asyncio.sleep(0.2)

    def statuses_between(self, start: float, end: float) -> list[int]:
        """Statuses of attempts sent at or after start and answered at or before end."""
        return [a.status for a in self.attempts if a.sent >= start and a.answered <= end]

    def first_accept_after(self, t: float) -> float | None:
        return next((a.answered for a in self.attempts if a.status == 200 and a.sent >= t), None)


@dataclass
class Viewer:
    """A dispatcher's socket.io client on /tracking: every positions:batch frame, timestamped
    with its arrival, and the largest fix time it carried."""

    sio: socketio.AsyncClient
    entries: list[tuple[float, str, int]] = field(default_factory=list)  # (t, driver, fix ms)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, url: str, token: str) -> Viewer:
        sio = socketio.AsyncClient(reconnection=False)
        viewer = cls(sio)

        def on_batch(data: Any = None) -> None:
            now = time.monotonic()
            for p in (data or {}).get("positions", []):
                if p.get("fixTime") and p.get("driverId"):
                    ms = int(datetime.fromisoformat(p["fixTime"]).timestamp() * 1000)
                    viewer.entries.append((now, p["driverId"], ms))

        def gone(*_: Any) -> None:
            viewer.disconnected.set()

        sio.on("positions:batch", on_batch, namespace=NS)
        sio.on("disconnect", gone, namespace=NS)
        await sio.connect(
            url,
            namespaces=[NS],
            # a dashboard-like viewer: positions:batch frames (seed clients get position:update)
            auth={"token": token, "batches": True},
            transports=["websocket"],
            wait_timeout=10,
        )
        return viewer

    def back_after(self, fix_ms: int, drivers: int) -> tuple[float, float] | None:
        """When the first driver, and when all ``drivers``, showed a fix later than fix_ms;
        None until all have."""
        first: dict[str, float] = {}
        for t, driver, ms in self.entries:
            if ms > fix_ms and driver not in first:
                first[driver] = t
        if len(first) < drivers:
            return None
        return min(first.values()), max(first.values())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


async def login_token(url: str) -> str:
    """Log in as tenant-1's admin; a 503 (a dependency briefly away) is retried, as the
    Retry-After contract asks of clients."""
    body = {"email": "admin@tenant1.com", "password": "admin123", "tenantId": FLEET_TENANT}
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(30):
            resp = await http.post(f"{url}/api/auth/login", json=body)
            if resp.status_code != 503:
                break
            await asyncio.sleep(1)
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["accessToken"]
    return token


async def health(url: str) -> dict[str, Any]:
    """GET /api/health; a transport error is reported as status "unreachable"."""
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            resp = await http.get(f"{url}/api/health")
    except httpx.TransportError as exc:
        return {"status": "unreachable", "error": type(exc).__name__}
    body: dict[str, Any] = resp.json()
    return body


async def wait_for(
    probe: Any, check: Any, *, within: float, interval: float = 0.2, what: str
) -> Any:
    """Poll an async probe until check(result) holds; a probe that raises counts as not yet."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        try:
            last = await probe()
            if check(last):
                return last
        except Exception as exc:  # a dependency may be down while we poll
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} not reached within {within}s; last: {last!r}"
                " (process logs: test-artifacts/reliability-logs/)"
            )
        await asyncio.sleep(interval)
