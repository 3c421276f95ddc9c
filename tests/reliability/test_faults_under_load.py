"""Faults under load: real `fleetpulse api` (x2) and `fleetpulse worker` (x3) processes on the
private fault stack, ~500 positions/s through POST /api/positions/batch, and one fault at a
time: a worker killed with SIGKILL, Kafka restarted, PostgreSQL restarted, Redis restarted,
an api process killed with a viewer connected to it.

After each: history holds exactly the accepted positions (every 2xx position stored, nothing
twice), receivers answered 503 (never 2xx) while Kafka was away, `/api/health` said degraded
during a service outage and ok after, and the time until accepts / history / the live feed
were back is measured and written to test-artifacts/reliability-faults.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from infrastructure.settings import PROJECT_ROOT, Settings
from tests.reliability.support import (
    Fleet,
    Load,
    Viewer,
    fleet_devices,
    health,
    login_token,
    wait_for,
    window_base_ms,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]

FIGURES_FILE = PROJECT_ROOT / "test-artifacts" / "reliability-faults.json"
FIGURES: dict[str, dict[str, Any]] = {}
windows: list[int] = []
OUTAGE_HOLD_S = 8.0  # how long a service stays down under load (> 2 produce timeouts)


async def history_check(pg: asyncpg.Pool, load: Load) -> tuple[int, int, set[tuple[str, int]]]:
    """(rows, distinct (driver, fix time), stored (device, fix ms)) of this run's positions."""
    rows = await pg.fetch(
        """SELECT device_unique_id AS d,
                  (extract(epoch FROM fix_time) * 1000)::bigint AS ms
           FROM positions WHERE fix_time >= to_timestamp($1 / 1000.0)
             AND fix_time < to_timestamp($1 / 1000.0) + interval '1 day'""",
        load.base_ms,
    )
    distinct = await pg.fetchval(
        """SELECT count(DISTINCT (driver_id, fix_time)) FROM positions
           WHERE fix_time >= to_timestamp($1 / 1000.0)
             AND fix_time < to_timestamp($1 / 1000.0) + interval '1 day'""",
        load.base_ms,
    )
    return len(rows), int(distinct), {(r["d"], int(r["ms"])) for r in rows}


async def stored_seqs(pg: asyncpg.Pool, load: Load) -> tuple[int, int]:
    """The sequence numbers of the oldest and newest per-device latest stored fixes: the first
    says how far every device's history has come (-1 while a device has none)."""
    row = await pg.fetchrow(
        """SELECT count(*) AS devices,
                  (extract(epoch FROM min(latest)) * 1000)::bigint AS lo,
                  (extract(epoch FROM max(latest)) * 1000)::bigint AS hi
           FROM (SELECT max(fix_time) AS latest FROM positions
                 WHERE fix_time >= to_timestamp($1 / 1000.0)
                   AND fix_time < to_timestamp($1 / 1000.0) + interval '1 day'
                 GROUP BY device_unique_id) AS per_device""",
        load.base_ms,
    )
    if row is None or row["devices"] < len(load.devices):
        return -1, -1 if row is None or row["hi"] is None else int(row["hi"]) - load.base_ms
    return int(row["lo"]) - load.base_ms, int(row["hi"]) - load.base_ms


@dataclass
class Run:
    """One fault scenario's load, viewer and timings."""

    name: str
    fleet: Fleet
    pg: asyncpg.Pool
    load: Load
    viewer: Viewer
    t_fault: float = 0.0
    t_back: float = 0.0
    seq_at_back: int = 0
    load_started: float = 0.0

    async def warm_up(self, positions: int = 1500) -> None:
        await wait_for(
            lambda: stored_seqs(self.pg, self.load),
            lambda s: s[0] >= positions,
            within=90,
            what=f"{self.name}: {positions} positions stored before the fault",
        )

    async def measure_recovery(self, *, within: float = 120.0) -> dict[str, float]:
        """Seconds from the end of the fault until fresh positions are accepted, until the
        history of the first / of every device moved past the fault, and the same for the
        live feed (the viewer's positions:batch frames)."""
        seq = self.seq_at_back = self.load.seq
        fix_ms = self.load.fix_ms(seq)
        t_first: float | None = None

        async def probe() -> tuple[int, int]:
            nonlocal t_first
            lo, hi = await stored_seqs(self.pg, self.load)
            if hi > seq and t_first is None:
                t_first = time.monotonic()
            return lo, hi

        await wait_for(
            probe,
            lambda s: s[0] > seq,
            within=within,
            what=f"{self.name}: every device's history moves past the fault",
        )
        t_history_all = time.monotonic()
        drivers = len(self.load.devices)
        live = await wait_for(
            lambda: _const(self.viewer.back_after(fix_ms, drivers)),
            lambda t: t is not None,
            within=within,
            what=f"{self.name}: live feed of every driver moves past the fault",
        )
        t_accept = self.load.first_accept_after(self.t_back)
        assert t_first is not None and t_accept is not None
        return {
            "accepts_back_s": round(t_accept - self.t_back, 2),
            "history_first_back_s": round(t_first - self.t_back, 2),
            "history_all_back_s": round(t_history_all - self.t_back, 2),
            "live_first_back_s": round(live[0] - self.t_back, 2),
            "live_all_back_s": round(live[1] - self.t_back, 2),
        }

    async def finish(self, figures: dict[str, Any]) -> None:
        """Stop the load, wait until history holds exactly what was accepted, record."""
        await asyncio.sleep(3)  # a few seconds of steady load after recovery
        t_stop = time.monotonic()
        await self.load.stop()
        assert not self.load.unexpected, self.load.unexpected[:5]
        accepted = len(self.load.accepted)
        assert accepted == self.load.seq, "every generated position was accepted once re-sent"
        await wait_for(
            lambda: history_check(self.pg, self.load),
            lambda c: c[0] >= accepted,
            within=120,
            what=f"{self.name}: history catches up with {accepted} accepted",
        )
        drained = time.monotonic() - t_stop
        await asyncio.sleep(2)  # a late redelivery would land now; it must change nothing
        rows, distinct, stored = await history_check(self.pg, self.load)
        assert rows == distinct == accepted
        assert stored == self.load.accepted  # every 2xx position stored, nothing else
        statuses = [a.status for a in self.load.attempts]
        figures.update(
            {
                "accepted": accepted,
                "stored": rows,
                "requests": len(statuses),
                "answered_503": statuses.count(503),
                "transport_errors": statuses.count(0),
                "load_positions_per_s": round(accepted / (t_stop - self.load_started), 0),
                "drained_after_load_stop_s": round(drained, 2),
            }
        )
        FIGURES[self.name] = figures
        FIGURES_FILE.parent.mkdir(exist_ok=True)
        FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2) + "\n")
        print(f"\n{self.name}: {json.dumps(figures)}")


async def _const(value: Any) -> Any:
    return value


@pytest.fixture
async def run(
    request: pytest.FixtureRequest, fleet: Fleet, fault_db: asyncpg.Pool
) -> AsyncIterator[Callable[[str], Awaitable[Run]]]:
    """Start the load (its own fix-time window) and a viewer on the first api."""
    runs: list[Run] = []

    async def start(viewer_api: str) -> Run:
        apis = fleet.alive("api")
        urls = [p.url for p in apis]
        # Each scenario writes its own window of fix times (a day each, in the past).
        windows.append(len(windows) + 1)
        load = Load(urls=urls, devices=fleet_devices(), base_ms=window_base_ms(windows[-1]))
        viewer = await Viewer.connect(viewer_api, await login_token(viewer_api))
        r = Run(request.node.name.removeprefix("test_"), fleet, fault_db, load, viewer)
        r.load_started = time.monotonic()
        load.start()
        runs.append(r)
        return r

    yield start
    for r in runs:
        if not r.load._stop.is_set():
            r.load._stop.set()
            for task in r.load._tasks:
                task.cancel()
            await asyncio.gather(*r.load._tasks, return_exceptions=True)
            await r.load._http.aclose()
        await r.viewer.close()


async def test_worker_killed_with_sigkill(
    fleet: Fleet, run: Callable[[str], Awaitable[Run]]
) -> None:
    import signal

    r = await run(fleet.alive("api")[0].url)
    await r.warm_up()
    victim = fleet.alive("worker")[0]
    r.t_fault = time.monotonic()
    victim.signal(signal.SIGKILL)
    await victim.wait_exit(10)
    r.t_back = time.monotonic()  # the survivors take its partitions over (session timeout)
    figures = await r.measure_recovery()
    fleet.start_worker()  # back to three
    await r.finish(figures)


async def _service_outage(
    r: Run, settings: Settings, service: str, *, receivers_refuse: bool
) -> dict[str, Any]:
    """Stop a service under load, hold it down, check health and receivers, restart it."""
    from infrastructure import stack

    api = r.fleet.alive("api")[0].url
    await r.warm_up()
    r.t_fault = time.monotonic()
    await asyncio.to_thread(stack.stop, settings, service)
    t_down = time.monotonic()
    during = await wait_for(
        lambda: health(api),
        lambda h: h.get("status") == "degraded",
        within=30,
        what=f"health degraded while {service} is down",
    )
    assert during["services"][service] == "down", during
    await asyncio.sleep(OUTAGE_HOLD_S)
    t_restart = time.monotonic()
    await asyncio.to_thread(stack.start, settings, service)
    r.t_back = time.monotonic()
    if receivers_refuse:
        # While the broker was down nothing could be persisted: no request sent and answered
        # in that window got a 2xx; receivers said 503 (or the request was still waiting).
        window = r.load.statuses_between(t_down, t_restart)
        trace = [
            (round(a.sent - t_down, 2), round(a.answered - t_down, 2), a.status)
            for a in r.load.attempts
            if a.answered >= t_down - 3
        ]
        assert 503 in window, f"no 503 while {service} was down: {trace}"
        assert all(s == 503 for s in window), window
    figures = await r.measure_recovery()
    after = await wait_for(
        lambda: health(api),
        lambda h: h.get("status") == "ok",
        within=90,
        what=f"health ok after {service} is back",
    )
    assert after["services"][service] == "up"
    figures["health_ok_after_s"] = round(time.monotonic() - r.t_back, 2)
    figures["outage_s"] = round(r.t_back - r.t_fault, 2)
    return figures


async def test_kafka_restarted(
    fleet: Fleet, run: Callable[[str], Awaitable[Run]], fault_stack: Settings
) -> None:
    r = await run(fleet.alive("api")[0].url)
    figures = await _service_outage(r, fault_stack, "kafka", receivers_refuse=True)
    await r.finish(figures)


async def test_postgres_restarted(
    fleet: Fleet, run: Callable[[str], Awaitable[Run]], fault_stack: Settings
) -> None:
    r = await run(fleet.alive("api")[0].url)
    figures = await _service_outage(r, fault_stack, "postgres", receivers_refuse=False)
    await r.finish(figures)


async def test_redis_restarted(
    fleet: Fleet, run: Callable[[str], Awaitable[Run]], fault_stack: Settings
) -> None:
    r = await run(fleet.alive("api")[0].url)
    figures = await _service_outage(r, fault_stack, "redis", receivers_refuse=False)
    await r.finish(figures)


async def test_api_killed_with_a_viewer_connected(
    fleet: Fleet, run: Callable[[str], Awaitable[Run]]
) -> None:
    import signal

    victim, survivor = fleet.alive("api")[:2]
    r = await run(victim.url)
    await r.warm_up()
    r.t_fault = time.monotonic()
    victim.signal(signal.SIGKILL)
    await victim.wait_exit(10)
    # The viewer notices and reconnects to the other api (a client's reconnect policy).
    await asyncio.wait_for(r.viewer.disconnected.wait(), 30)
    old = r.viewer
    r.viewer = await Viewer.connect(survivor.url, await login_token(survivor.url))
    await old.close()
    r.t_back = r.t_fault  # recovery is measured from the kill: clients fail over at once
    figures = await r.measure_recovery()
    assert (await health(survivor.url))["status"] == "ok"
    failed = r.load.statuses_between(r.t_fault, time.monotonic())
    assert all(s in (0, 200) for s in failed), failed  # refused connections, never 5xx
    await fleet.start_api(victim.port)  # back to two for whatever runs next
    await r.finish(figures)
