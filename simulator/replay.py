"""Replaying a fleet recorded in advance, for the load benchmarks.

``record_reports`` drives the whole run first (``simulator.fleet``), so that while a
benchmark measures, the load generator — which shares the cores with what it measures — only
sends: a dictionary lookup per report instead of the simulation. ``forward_as_gateway`` sends
the recorded reports as a gateway in front of the batch endpoint would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.driving import Fix
from simulator.fleet import Fleet, RunStats, SimClock, report_times, run_end_ms
from simulator.protocols import Sender, batch_body


@dataclass
class RecordedDriver:
    """A driver whose reports were all computed in advance (``record_reports``)."""

    device_id: str
    start_ms: int
    dropped: int
    reports: dict[int, list[Fix]]
    rest: list[Fix]

    def done_at(self, t_ms: int) -> bool:
        return t_ms not in self.reports

    def report(self, t_ms: int) -> list[Fix]:
        return self.reports.pop(t_ms)

    def flush(self) -> list[Fix]:
        rest, self.rest = self.rest, []
        return rest


def record_reports(fleet: Fleet) -> list[RecordedDriver]:
    """Drive the whole run in advance, for benchmarks: the load generator shares the cores
    with what it measures, and replaying costs it a dictionary lookup a report instead of
    the simulation. The reports are the ones drive_fleet would make, at the same times."""
    cfg = fleet.cfg
    end_ms = run_end_ms(fleet)
    interval_ms = int(cfg.interval_s * 1000)
    out = []
    for d in fleet.drivers:
        reports = {t: d.report(t) for t in report_times(d, interval_ms, end_ms)}
        rest = d.flush()
        out.append(RecordedDriver(d.device_id, d.start_ms, d.dropped, reports, rest))
    return out


@dataclass(frozen=True, slots=True)
class DueReport:
    """A recorded report, its NDJSON encoded in advance (``recorded_batch_reports``)."""

    t_ms: int
    fixes: list[Fix]
    ndjson: bytes


def recorded_batch_reports(fleet: Fleet, drivers: Sequence[RecordedDriver]) -> list[DueReport]:
    """Every recorded report in the order they fall due, encoded for the batch endpoint.

    A driver's held-back fixes (``flush``) fall due with its last report, as in drive_fleet."""
    end_ms = run_end_ms(fleet)
    interval_ms = int(fleet.cfg.interval_s * 1000)
    due = []
    for d in drivers:
        last = d.start_ms
        for last in report_times(d, interval_ms, end_ms):
            if fixes := d.report(last):
                due.append(DueReport(last, fixes, batch_body(fixes)))
        if rest := d.flush():
            due.append(DueReport(last, rest, batch_body(rest)))
    due.sort(key=lambda r: r.t_ms)  # stable: a driver's reports keep their order
    return due


async def forward_as_gateway(
    due: Sequence[DueReport],
    sender: Sender,
    clock: SimClock,
    *,
    linger_s: float = 0.05,
    batch_max: int = 2_000,
) -> RunStats:
    """Forward reports as a gateway in front of the batch endpoint does: everything due goes
    in the next NDJSON request, one request at a time, so each device's fixes arrive in order.

    Unlike ``drive_fleet``'s drivers, a device does not wait for the previous report's answer
    (the gateway took it): requests grow when answers slow down, and the lag of a report (due
    → posted) measures how far the receivers are behind.
    """
    stats = RunStats()
    i = 0
    last_post = -linger_s
    while i < len(due):
        delay = max(clock.wall_delay_s(due[i].t_ms), last_post + linger_s - time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)
        now_ms = clock.now_ms()
        j, n = i, 0
        while j < len(due) and due[j].t_ms <= now_ms and n < batch_max:
            n += len(due[j].fixes)
            j += 1
        batch, i = due[i:j], j
        # wall seconds late: at speedup 1 the clocks tick together
        stats.lag_s += [(now_ms - r.t_ms) / 1000 / clock.speedup for r in batch]
        stats.ticks += len(batch)
        last_post = time.monotonic()
        await sender.send_encoded(
            b"\n".join([r.ndjson for r in batch]), [f for r in batch for f in r.fixes]
        )
    await sender.close()
    stats.end_ms = clock.now_ms()
    return stats
