"""The history generator writes the simulator's past through the storage path, on both backends.

One day of two drivers on Liechtenstein: the drivers are created through the API, the fixes
land in ``positions`` with the worker's movement labels, exactly the fixes the generator makes
for that seed, inside the country and the local day; the minute rollup covers them; a second
run finds the days stored and writes nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from api.cli_history import ensure_history_drivers, write_history
from geo.movement import label_fixes
from simulator.fleet import FleetConfig
from simulator.history import HistoryConfig, history_days
from simulator.network import load_network
from simulator.run import no_progress
from tests.conftest import Backend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAY = date(2026, 10, 14)  # a Wednesday


async def test_one_day_of_two_drivers_through_the_storage_path(backend: Backend) -> None:
    net = load_network("liechtenstein")
    cfg = HistoryConfig(
        fleet=FleetConfig(
            drivers=2, seed=11, network="liechtenstein", interval_s=10.0, device_prefix="HIST"
        ),
        weeks=1 / 7,
        end_day=DAY + timedelta(days=1),
    )
    ids = await ensure_history_drivers(
        backend.client, cfg, email="admin@tenant1.com", password="admin123", tenant="tenant-1"
    )
    assert sorted(ids) == ["HIST00001", "HIST00002"]
    async with backend.pool.acquire() as conn:
        result = await write_history(
            conn, cfg, ids, tenant="tenant-1", net=net, progress=no_progress
        )
        assert result.driver_days == 2 and result.skipped == 0
        expected = list(history_days(cfg, net))
        assert [d.day for d in expected] == [DAY, DAY]
        assert result.fixes == sum(d.t.size for d in expected) > 1_000

        zone = ZoneInfo("Europe/Vaduz")
        for day in expected:
            rows = await conn.fetch(
                """SELECT extract(epoch FROM fix_time) AS t, lon, lat, speed_kmh, tenant_id,
                          device_unique_id, step_m, motion, trip_m, stop_counted
                   FROM positions WHERE driver_id = $1 ORDER BY fix_time""",
                ids[day.device_id],
            )
            assert len(rows) == day.t.size
            assert np.allclose([float(r["t"]) for r in rows], day.t)
            assert np.allclose([r["lon"] for r in rows], day.lon)
            assert {r["tenant_id"] for r in rows} == {"tenant-1"}
            assert {r["device_unique_id"] for r in rows} == {day.device_id}
            assert all(9.46 < r["lon"] < 9.64 and 47.04 < r["lat"] < 47.28 for r in rows)
            local = {datetime.fromtimestamp(float(r["t"]), zone).date() for r in rows}
            assert local == {DAY}
            # the worker's labels, as label_fixes gives them for the day
            labels, _ = label_fixes(day.t, day.lon, day.lat, day.speed_kmh)
            assert [r["motion"] for r in rows] == [
                None if m == 0 else int(m) for m in labels.motion
            ]
            assert sum(1 for r in rows if r["stop_counted"]) == int(labels.stop_counted.sum())
            # it drove: its stops (8-20 visits) are in the truth, each after 5+ min of driving
            assert 8 <= len(day.visits) <= 20
            assert all(v.arrive_ms is not None for v in day.visits)

        minutes = await conn.fetchval(
            "SELECT count(*) FROM positions_1m WHERE driver_id = ANY($1::uuid[])",
            list(ids.values()),
        )
        assert minutes > 100

        again = await write_history(
            conn, cfg, ids, tenant="tenant-1", net=net, progress=no_progress
        )
        assert (again.driver_days, again.skipped, again.fixes) == (0, 2, 0)
        total = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE driver_id = ANY($1::uuid[])", list(ids.values())
        )
        assert total == result.fixes
