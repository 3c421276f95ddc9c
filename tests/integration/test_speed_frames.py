"""The notebook API of the learned speeds (analytics.frames.History: road_speeds,
speed_profile, learned_profile, fallback_levels) on both backends, against what the stored
traversals say (tests/integration/speeds_support.py computes it from edge_traversals)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
import pytest
from shapely.geometry import box

from analytics.errors import InvalidQuery
from analytics.frames import History
from geo.eta import SOURCES
from tests.conftest import Backend
from tests.integration.speeds_support import (
    LearnedGrid,
    build_learned_grid,
    chain_levels,
    class_profile,
    segment_speeds,
    traversal_sums,
)
from tests.integration.test_learned_speeds import SPEEDS_MS
from tests.unit.test_matching import grid_segments

pytestmark = pytest.mark.integration

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"
JANE = "a1b2c3d4-0002-4000-8000-000000000002"
BOB = "a1b2c3d4-0003-4000-8000-000000000003"  # tenant-2
GRID = LearnedGrid(
    "frames-grid",
    -30.0,
    -6.0,
    3,  # the Thursday of the week before last
    (
        ("tenant-1", JOHN, "DEV001", 11),
        ("tenant-1", JANE, "DEV002", 12),
        ("tenant-2", BOB, "DEV003", 13),
    ),
    2_000_000,
)
COLUMNS = [
    "network",
    "source",
    "target",
    "highway",
    "name",
    "traversals",
    "speed_kmh",
    "mean_travel_s",
    "free_flow_kmh",
    "geometry",
]


@pytest.fixture(scope="module")
async def learned(backend: Backend) -> History:
    async with backend.pool.acquire() as conn:
        await build_learned_grid(conn, GRID)
    return History(backend.settings)


async def stored(backend: Backend, tenant: str) -> list[dict[str, Any]]:
    async with backend.pool.acquire() as conn:
        return await traversal_sums(conn, tenant=tenant, network=GRID.network)


def as_dict(frame: Any) -> dict[str, tuple[int, float]]:
    return {str(i): (int(r.traversals), float(r.speed_kmh)) for i, r in frame.iterrows()}


def assert_same_speeds(
    got: dict[str, tuple[int, float]], want: dict[str, tuple[int, float]]
) -> None:
    assert set(got) == set(want) and got
    for k, (n, kmh) in want.items():
        assert got[k][0] == n, k
        assert got[k][1] == pytest.approx(kmh, abs=0.051), k  # rounded to 0.1 km/h


async def test_road_speeds_frame(backend: Backend, learned: History) -> None:
    rows = await stored(backend, "tenant-1")
    lines = {
        f"{GRID.network}:{s.source + GRID.node_offset}:{s.target + GRID.node_offset}": s.coords
        for s in grid_segments(GRID.lon0, GRID.lat0)
    }
    for hour in (GRID.rush_hour, GRID.midday_hour, None):
        frame = await asyncio.to_thread(
            learned.road_speeds, "tenant-1", hour_of_week=hour, network=GRID.network
        )
        assert list(frame.columns) == COLUMNS and frame.crs.to_epsg() == 4326
        assert_same_speeds(as_dict(frame), segment_speeds(rows, GRID.network, hour))
        assert set(frame.geom_type) == {"LineString"}
        for i, r in frame.iterrows():
            assert np.allclose(np.array(r.geometry.coords), np.array(lines[str(i)]), atol=1e-7)
        assert set(frame.free_flow_kmh) <= {30.0, 50.0}
        assert (frame.highway == "secondary").equals(frame.free_flow_kmh == 50.0)
        if hour is not None:  # the scripted speed of the hour, through noise and matching
            true_kmh = SPEEDS_MS[hour - GRID.weekday * 24] * 3.6
            assert float(frame.speed_kmh.median()) == pytest.approx(true_kmh, rel=0.10)

    # filters: at least n traversals, a box, the learning window, the network, the tenant
    everything = segment_speeds(rows, GRID.network, None)
    two = await asyncio.to_thread(
        learned.road_speeds, "tenant-1", network=GRID.network, min_traversals=2
    )
    assert set(two.index) == {k for k, (n, _) in everything.items() if n >= 2}
    assert 0 < len(two) < len(everything)
    x0, y0 = GRID.lon0 + 0.0005, GRID.lat0 + 0.0005
    bbox = (x0, y0, x0 + 0.004, y0 + 0.004)
    boxed = await asyncio.to_thread(learned.road_speeds, "tenant-1", bbox=bbox)
    within = {k for k in everything if box(*bbox).intersects(box(*_bounds(lines[k])))}
    assert set(boxed.index) == within and 0 < len(within) < len(everything)
    old = await asyncio.to_thread(learned.road_speeds, "tenant-1", network=GRID.network, weeks=1)
    assert old.empty and list(old.columns) == COLUMNS and old.crs.to_epsg() == 4326
    none = await asyncio.to_thread(learned.road_speeds, "tenant-1", network="no-such-network")
    assert none.empty
    bob = await asyncio.to_thread(learned.road_speeds, "tenant-2", network=GRID.network)
    assert_same_speeds(
        as_dict(bob), segment_speeds(await stored(backend, "tenant-2"), GRID.network, None)
    )


def _bounds(coords: Any) -> tuple[float, float, float, float]:
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return min(xs), min(ys), max(xs), max(ys)


async def test_speed_profile_frame(backend: Backend, learned: History) -> None:
    want = class_profile(await stored(backend, "tenant-1"))
    profile = await asyncio.to_thread(learned.speed_profile, "tenant-1", network=GRID.network)
    assert list(profile.columns) == [
        "highway",
        "hour_of_week",
        "day",
        "hour",
        "traversals",
        "segments",
        "speed_kmh",
    ]
    got = {
        (r.highway, r.hour_of_week): (r.traversals, r.segments, r.speed_kmh)
        for r in profile.itertuples()
    }
    assert (
        set(got)
        == set(want)
        == {(c, GRID.hour_of_week(h)) for c in ("residential", "secondary") for h in SPEEDS_MS}
    )
    for k, (n, segments, kmh) in want.items():
        assert got[k][:2] == (n, segments), k
        assert got[k][2] == pytest.approx(kmh, rel=1e-9), k
    assert set(profile.day) == {"Thu"} and set(profile.hour) == set(SPEEDS_MS)
    secondary = await asyncio.to_thread(
        learned.speed_profile, "tenant-1", network=GRID.network, highway="secondary"
    )
    assert set(secondary.highway) == {"secondary"} and len(secondary) == len(SPEEDS_MS)
    old = await asyncio.to_thread(learned.speed_profile, "tenant-1", network=GRID.network, weeks=1)
    assert old.empty and list(old.columns) == list(profile.columns)


async def test_fallback_levels_frame(backend: Backend, learned: History) -> None:
    rows = await stored(backend, "tenant-1")
    segments = len(grid_segments())
    for hour in (GRID.rush_hour, GRID.midday_hour, GRID.rush_hour + 24):
        for need in (1, 2, 4):
            levels = await asyncio.to_thread(
                learned.fallback_levels, "tenant-1", hour, network=GRID.network, min_samples=need
            )
            assert len(levels) == segments and levels.crs.to_epsg() == 4326
            assert set(levels.level) <= set(SOURCES)
            async with backend.pool.acquire() as conn:
                want = await chain_levels(
                    conn, rows, network=GRID.network, hour=hour, min_samples=need
                )
            assert Counter(levels.level) == want, (hour, need)
            if hour == GRID.rush_hour + 24:  # nothing driven then: all hours or nothing
                assert set(want) <= {"segment_scaled", "planning"}
            elif need <= 2:  # two drivers x three drives an hour reach every other level
                assert {"segment_hour", "segment_scaled", "cell_hour", "class_hour"} <= set(want)
            # where the segment itself is learned at the hour, the speed is what it learned
            at_hour = segment_speeds(rows, GRID.network, hour)
            own = levels[levels.level == "segment_hour"]
            for i, r in own.iterrows():
                assert r.speed_kmh == pytest.approx(at_hour[str(i)][1], rel=1e-6)
    profile = await asyncio.to_thread(
        learned.learned_profile, "tenant-1", network=GRID.network, min_samples=2
    )
    totals: Counter[tuple[int, int]] = Counter()
    for r in rows:
        totals[(r["source"], r["target"])] += r["n"]
    assert set(profile.segment_any) == {k for k, n in totals.items() if n >= 2}
    assert profile.samples == sum(totals.values())


async def test_bad_input(learned: History) -> None:
    calls = [
        lambda: learned.road_speeds("tenant-1", hour_of_week=168),
        lambda: learned.road_speeds("tenant-1", hour_of_week=-1),
        lambda: learned.road_speeds("tenant-1", bbox=(10.0, 0.0, -10.0, 5.0)),
        lambda: learned.road_speeds("tenant-1", bbox=(0.0, -91.0, 1.0, 1.0)),
        lambda: learned.road_speeds("tenant-1", min_traversals=0),
        lambda: learned.road_speeds("tenant-1", weeks=0),
        lambda: learned.speed_profile("tenant-1", weeks=53),
        lambda: learned.fallback_levels("tenant-1", 168, network=GRID.network),
        lambda: learned.fallback_levels("tenant-1", 7, network=GRID.network, min_samples=0),
        lambda: learned.learned_profile("tenant-1", network=GRID.network, weeks=-2),
    ]
    for call in calls:
        with pytest.raises(InvalidQuery):
            await asyncio.to_thread(call)
