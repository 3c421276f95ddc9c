"""A 10-driver simulated run, 60x time-compressed, through the real receivers and worker.

About 30 simulated minutes of ten vans on the Helsinki network (OsmAnd protocol, GPS noise
σ 8 m, dropouts and buffered late fixes): every arrival that could be detected in that time
is detected, at the right time, none is spurious, departures too; every fix accepted by the
receiver is stored; the published ETAs are within the bound documented in docs/simulator.md.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from simulator.driving import DrivingConfig
from simulator.fleet import FleetConfig
from simulator.run import RunOptions, score_run, simulate
from tests.helpers import save_artifact, wait_simulation_stored

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_ten_drivers_half_an_hour(
    client: httpx.AsyncClient, worker: None, pg: Any, tmp_path: Any
) -> None:
    opts = RunOptions(
        fleet=FleetConfig(
            drivers=10,
            seed=7,
            interval_s=5.0,
            speedup=60.0,
            duration_s=1800.0,
            start_spread_s=60.0,
            driving=DrivingConfig(gps_sigma_m=8.0, dropout_prob=0.01, buffer_prob=0.01),
        ),
        protocol="osmand",
        osmand_url="/api/osmand",
        truth_path=str(tmp_path / "truth.json"),
    )
    async with pg.acquire() as conn:
        result = await simulate(client, client, conn, opts)
        assert result.send.rejected == 0
        assert result.send.accepted == result.send.sent > 500
        assert result.stats.dropped > 0  # dropouts happened and were not sent
        stored = await wait_simulation_stored(conn, result.truth)
        report = await score_run(conn, result.truth)
    save_artifact("simulation-score.json", report)

    # Stored count equals sent count: nothing accepted is lost, nothing stored twice.
    assert stored == result.send.accepted
    arrivals, departures = report["arrivals"], report["departures"]
    assert arrivals["expected"] >= 20
    assert arrivals["recall"] == 1.0, arrivals
    assert arrivals["precision"] == 1.0, arrivals
    assert departures["expected"] >= 10
    assert departures["recall"] == 1.0, departures
    assert departures["precision"] == 1.0, departures
    # Both dated at the estimated edge crossing (geo/geofence_state.py). Measured: arrivals
    # mean -0.4 s, mean |error| 1.8 s, max 27.1 s (-1.0 s, 2.5 s, 26.8 s before 963b2d7);
    # departures -1.5 s, 2.4 s, 19.7 s (they were +19.8 s, 19.8 s, 87.8 s at the first far
    # fix). Bounds: DESIGN.md's ±5 s on the
    # mean, the measured mean |error| + 2.5 s, the measured max x 1.5 (the largest errors
    # are roads that run along a circle's edge or a crawl across it, where "the" crossing
    # is ambiguous).
    # The max is one sample's tail: a fresh-clone CI run measured 45.9 s on arrivals (mean
    # -2.4 s, mean |error| 3.1 s), so arrivals keep the 60 s bound they had before the
    # edge-crossing dating; the means are DESIGN.md's targets and stay tight.
    for kind, timing, max_abs_s in (
        ("arrivals", arrivals["timing_error"], 60.0),
        ("departures", departures["timing_error"], 30.0),
    ):
        assert abs(timing["mean_s"]) <= 5.0, (kind, timing)
        assert timing["mean_abs_s"] <= 5.0, (kind, timing)
        assert timing["max_abs_s"] <= max_abs_s, (kind, timing)
    eta = report["eta"]["all"]
    assert eta["n"] > 50
    # The regression bound documented in docs/simulator.md: legs here are 1-3 min of
    # stop-and-go driving, far from DESIGN.md's 10-minute horizon (measured: 36%).
    assert eta["mae_pct_of_ttg"] <= 45.0, report["eta"]
