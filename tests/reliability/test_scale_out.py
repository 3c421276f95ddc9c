"""Scale-out: 2 api processes and 3 workers under load; workers leave (SIGTERM) and join
while positions flow, the group rebalances the 6 partitions of gps.positions, and history
ends with exactly the accepted positions (nothing lost, nothing twice)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import asyncpg
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from infrastructure.kafka import GPS_POSITIONS, admin_client, consumer_group_lag
from infrastructure.settings import PROJECT_ROOT, Settings
from tests.reliability.support import Fleet, Load, fleet_devices, wait_for, window_base_ms

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]

FIGURES_FILE = PROJECT_ROOT / "test-artifacts" / "reliability-scale-out.json"
PARTITIONS = 6


async def assignment(settings: Settings) -> tuple[str, list[list[int]]]:
    """The enrichment group's state and each member's gps.positions partitions."""
    kafka = settings.kafka
    group = f"{kafka.topic_prefix}{kafka.enrichment_group}"
    admin = admin_client(kafka)
    try:
        await admin.start()
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.to_object()["groups"]
    members = []
    for member in described["members"]:
        raw = member["member_assignment"]
        parts: list[int] = []
        if raw:
            decoded = ConsumerProtocolMemberAssignment.decode(raw)
            for topic, partitions in decoded.assignment:
                if topic == kafka.topic(GPS_POSITIONS):
                    parts.extend(partitions)
        members.append(sorted(parts))
    return str(described["state"]), members


def balanced(members: int) -> Any:
    """A check: the group is Stable with ``members`` members that share all partitions,
    each partition once, each member at least one."""

    def check(got: tuple[str, list[list[int]]]) -> bool:
        state, parts = got
        flat = sorted(p for member in parts for p in member)
        return (
            state == "Stable"
            and len(parts) == members
            and flat == list(range(PARTITIONS))
            and all(parts)
        )

    return check


async def history(pg: asyncpg.Pool, load: Load) -> tuple[int, int, set[tuple[str, int]]]:
    rows = await pg.fetch(
        """SELECT device_unique_id AS d, (extract(epoch FROM fix_time) * 1000)::bigint AS ms
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


async def test_workers_leave_and_join_under_load_without_loss_or_duplicates(
    fleet: Fleet, fault_stack: Settings, fault_db: asyncpg.Pool
) -> None:
    settings = fault_stack
    apis = fleet.alive("api")
    assert len(apis) == 2 and len(fleet.alive("worker")) == 3
    load = Load(urls=[a.url for a in apis], devices=fleet_devices(), base_ms=window_base_ms(20))
    figures: dict[str, Any] = {}
    load.start()
    try:
        await wait_for(
            lambda: assignment(settings), balanced(3), within=60, what="3 workers share 6"
        )
        await wait_for(
            lambda: history(fault_db, load),
            lambda h: h[0] >= 1500,
            within=60,
            what="positions stored",
        )
        # A worker leaves cleanly: its partitions move to the two others.
        leaving = fleet.alive("worker")[0]
        t = time.monotonic()
        leaving.signal(signal.SIGTERM)
        assert await leaving.wait_exit(60) == 0
        await wait_for(
            lambda: assignment(settings), balanced(2), within=60, what="2 workers share 6"
        )
        figures["leave_rebalanced_s"] = round(time.monotonic() - t, 2)
        # A new worker joins and gets its share.
        t = time.monotonic()
        fleet.start_worker()
        await wait_for(lambda: assignment(settings), balanced(3), within=60, what="3 workers again")
        figures["join_rebalanced_s"] = round(time.monotonic() - t, 2)
        # One leaves while another joins, at the same moment.
        t = time.monotonic()
        swapped = fleet.alive("worker")[0]
        swapped.signal(signal.SIGTERM)
        fleet.start_worker()
        assert await swapped.wait_exit(60) == 0
        await wait_for(
            lambda: assignment(settings), balanced(3), within=60, what="3 after the swap"
        )
        figures["swap_rebalanced_s"] = round(time.monotonic() - t, 2)
        await asyncio.sleep(3)
    finally:
        t_stop = time.monotonic()
        await load.stop()
    assert not load.unexpected, load.unexpected[:5]
    accepted = len(load.accepted)
    assert accepted == load.seq
    await wait_for(
        lambda: history(fault_db, load),
        lambda h: h[0] >= accepted,
        within=120,
        what=f"history catches up with {accepted}",
    )
    figures["drained_after_load_stop_s"] = round(time.monotonic() - t_stop, 2)
    await asyncio.sleep(2)
    rows, distinct, stored = await history(fault_db, load)
    assert rows == distinct == accepted
    assert stored == load.accepted
    # Every partition was consumed to its end and committed by the group.
    lag = await wait_for(
        lambda: consumer_group_lag(settings.kafka, GPS_POSITIONS, settings.kafka.enrichment_group),
        lambda lag: len(lag) == PARTITIONS and sum(lag.values()) == 0,
        within=60,
        what="no lag on any partition",
    )
    assert sorted(lag) == list(range(PARTITIONS))
    by_api = {
        url: sum(1 for a in load.attempts if a.url == url and a.status == 200) for url in load.urls
    }
    assert all(by_api.values()), by_api  # both api processes took positions
    statuses = [a.status for a in load.attempts]
    figures.update(
        {
            "accepted": accepted,
            "stored": rows,
            "answered_503": statuses.count(503),
            "load_positions_per_s": round(accepted / (t_stop - load.accepted_at[0][0]), 0),
        }
    )
    FIGURES_FILE.parent.mkdir(exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nscale_out: {json.dumps(figures)}")
