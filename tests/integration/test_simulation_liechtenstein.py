"""The simulated fleet on Liechtenstein end to end: set up through the API, drive, score.

Six vans, 60x time-compressed, 50 simulated minutes on the regional network (legs of 5–30 min
free flow, traffic by time of day): every fix accepted is stored, the arrivals that could be
detected are, none spurious, and the scorer has ETA samples at the 5–10 and 10–20 minute
horizons that the Helsinki centre cannot produce.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from simulator.driving import DrivingConfig
from simulator.fleet import FleetConfig
from simulator.network import load_network
from simulator.roads import load_road_edges
from simulator.run import RunOptions, score_run, simulate
from tests.helpers import save_artifact, wait_simulation_stored

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_six_drivers_on_liechtenstein(
    client: httpx.AsyncClient, worker: None, pg: Any, tmp_path: Any
) -> None:
    net = load_network("liechtenstein")
    opts = RunOptions(
        fleet=FleetConfig(
            drivers=6,
            seed=5,
            network="liechtenstein",
            interval_s=5.0,
            speedup=60.0,
            duration_s=3000.0,
            start_spread_s=60.0,
            device_prefix="LIE",
            driving=DrivingConfig(gps_sigma_m=8.0, dropout_prob=0.0, buffer_prob=0.0),
        ),
        protocol="osmand",
        osmand_url="/api/osmand",
        truth_path=str(tmp_path / "truth.json"),
    )
    async with pg.acquire() as conn:
        assert await load_road_edges(conn, net) == net.graph.number_of_edges()
        result = await simulate(client, client, conn, opts)
        assert result.send.rejected == 0
        assert result.send.accepted == result.send.sent > 1_000
        stored = await wait_simulation_stored(conn, result.truth)
        report = await score_run(conn, result.truth)
        networks = await conn.fetch("SELECT DISTINCT network FROM road_edges")
    save_artifact("simulation-score-liechtenstein.json", report)
    assert "liechtenstein" in {r["network"] for r in networks}
    assert stored == result.send.accepted
    # every leg's free-flow time is 5-30 min: the first stop is reached after 5 min or more
    for d in result.fleet.drivers:
        first = d.visits[0]
        assert first.arrive_ms is None or first.arrive_ms - d.start_ms >= 300_000
    arrivals = report["arrivals"]
    assert arrivals["expected"] >= 4, arrivals
    assert arrivals["recall"] == 1.0, arrivals
    assert arrivals["precision"] == 1.0, arrivals
    eta = report["eta"]
    assert eta["5-10min"]["n"] > 20 and eta["10-20min"]["n"] > 20, eta
