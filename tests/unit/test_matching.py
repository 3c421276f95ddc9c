"""The HMM map matcher (geo.matching) on a synthetic street grid with noisy GPS.

* Viterbi's answer is the most likely sequence: checked against brute force over every
  combination of candidates on short noisy tracks;
* on long noisy tracks the traversals it reports are the segments really driven, with the
  true entry and exit times (within a few seconds).
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from geo.matching import (
    MatchFix,
    MatchParams,
    RoadGraph,
    RoadSegment,
    Routes,
    emission_score,
    match,
    thin,
    transition_score,
)

LAT0, LON0 = 47.1, 9.5
SPACING_M = 200.0
DLAT = SPACING_M / 111_320.0
DLON = SPACING_M / (111_320.0 * math.cos(math.radians(LAT0)))
N = 6  # 6 × 6 junctions, two-way streets


def node(i: int, j: int) -> int:
    return i * N + j + 1


def lonlat(i: int, j: int, lon0: float = LON0, lat0: float = LAT0) -> tuple[float, float]:
    return (lon0 + j * DLON, lat0 + i * DLAT)


def grid() -> RoadGraph:
    return RoadGraph(grid_segments())


def grid_segments(lon0: float = LON0, lat0: float = LAT0) -> list[RoadSegment]:
    """The grid's directed segments (each street both ways, a vertex at mid-block)."""

    def lonlat(i: int, j: int) -> tuple[float, float]:
        return (lon0 + j * DLON, lat0 + i * DLAT)

    segs = []
    for i in range(N):
        for j in range(N):
            for di, dj in ((0, 1), (1, 0)):
                a, b = (i, j), (i + di, j + dj)
                if b[0] >= N or b[1] >= N:
                    continue
                mid = ((lonlat(*a)[0] + lonlat(*b)[0]) / 2, (lonlat(*a)[1] + lonlat(*b)[1]) / 2)
                segs.append(RoadSegment(node(*a), node(*b), (lonlat(*a), mid, lonlat(*b))))
                segs.append(RoadSegment(node(*b), node(*a), (lonlat(*b), mid, lonlat(*a))))
    return segs


def drive(
    path: list[tuple[int, int]],
    speed_ms: float,
    start_ms: int = 0,
    lon0: float = LON0,
    lat0: float = LAT0,
):
    """True (t_ms, lon, lat) every 0.1 s along the junctions of ``path``, and the true
    (enter_ms, exit_ms) of each drive through each segment (source, target)."""
    truth: dict[tuple[int, int], list[tuple[float, float]]] = {}
    samples = []
    t = float(start_ms)
    for a, b in zip(path, path[1:], strict=False):
        (x0, y0), (x1, y1) = lonlat(*a, lon0, lat0), lonlat(*b, lon0, lat0)
        steps = int(SPACING_M / speed_ms / 0.1)
        enter = t
        for k in range(steps):
            f = k / steps
            samples.append((t, x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
            t += 100.0
        truth.setdefault((node(*a), node(*b)), []).append((enter, t))
    return samples, truth


def noisy(samples, every_s: float, sigma_m: float, rng: random.Random) -> list[MatchFix]:
    out = []
    step = int(every_s * 10)
    for t, lon, lat in samples[::step]:
        dx, dy = rng.gauss(0, sigma_m), rng.gauss(0, sigma_m)
        out.append(MatchFix(int(t), lon + dx * DLON / SPACING_M, lat + dy * DLAT / SPACING_M))
    return out


def random_path(rng: random.Random, length: int) -> list[tuple[int, int]]:
    """A walk over the grid that never turns straight back."""
    here = (rng.randrange(N), rng.randrange(N))
    path = [here]
    while len(path) < length:
        i, j = path[-1]
        options = [
            (i + di, j + dj)
            for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0))
            if 0 <= i + di < N
            and 0 <= j + dj < N
            and (len(path) < 2 or (i + di, j + dj) != path[-2])
        ]
        path.append(rng.choice(options))
    return path


def total_score(graph, routes, fixes, xy, seq, params) -> float:
    s = emission_score(fixes[0], seq[0][2], params)
    for k in range(1, len(seq)):
        dt = (fixes[k].t_ms - fixes[k - 1].t_ms) / 1000
        line = float(np.hypot(*(xy[k] - xy[k - 1])))
        step = transition_score(
            routes, (seq[k - 1][0], seq[k - 1][1]), (seq[k][0], seq[k][1]), line, dt, params
        )
        s += step + emission_score(fixes[k], seq[k][2], params)
    return s


@pytest.mark.parametrize("seed", range(12))
def test_viterbi_finds_the_most_likely_sequence(seed: int) -> None:
    rng = random.Random(seed)
    graph = grid()
    params = MatchParams(max_candidates=4, search_m=40.0)
    samples, _ = drive(random_path(rng, 4), 10.0)
    fixes = thin(noisy(samples, 6.0, 12.0, rng), graph, params)[:6]
    xy = np.array([graph.to_xy(f.lon, f.lat) for f in fixes])
    cands = graph.candidates(xy, params.search_m, params.max_candidates)
    assert all(cands), "every fix has candidates on a grid this dense"
    routes = Routes(graph, params.backward_m)
    best = -math.inf
    for combo in itertools.product(*cands):
        best = max(best, total_score(graph, routes, fixes, xy, list(combo), params))
    assert best > -math.inf
    result = match(graph, fixes, params)
    assert result.breaks == 0
    chosen = [(p.edge, p.offset_m, p.distance_m) for p in result.points]
    assert len(chosen) == len(fixes)
    assert total_score(graph, routes, fixes, xy, chosen, params) == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_noisy_tracks_give_the_true_segments_and_times(seed: int) -> None:
    rng = random.Random(100 + seed)
    graph = grid()
    path = random_path(rng, 25)
    samples, truth = drive(path, rng.uniform(6.0, 14.0))
    fixes = noisy(samples, rng.choice([1.0, 3.0, 5.0]), rng.uniform(5.0, 12.0), rng)
    result = match(graph, fixes)
    assert result.traversals, "a 24-block drive yields traversals"
    right = [t for t in result.traversals if t.key in truth]
    assert len(right) / len(result.traversals) >= 0.95
    # the inner segments (not the first and last, entered or left midway) are all found
    driven = sum(len(v) for v in truth.values())
    assert len(right) >= 0.85 * (driven - 2)
    errors = [
        min(abs(t.enter_ms - a) / 1000 + abs(t.exit_ms - b) / 1000 for a, b in truth[t.key])
        for t in right
    ]
    assert sum(errors) / len(errors) / 2 <= 3.0


def test_a_waiting_vehicle_is_not_driving_back_and_forth() -> None:
    rng = random.Random(7)
    graph = grid()
    lon, lat = lonlat(2, 2)
    parked = [
        MatchFix(
            k * 5000,
            lon + rng.gauss(0, 12) * DLON / SPACING_M,
            lat + rng.gauss(0, 12) * DLAT / SPACING_M,
            None,
            0.0,
        )
        for k in range(120)
    ]
    assert match(graph, parked).traversals == []


def test_a_track_off_the_map_matches_nothing() -> None:
    graph = grid()
    fixes = [MatchFix(k * 5000, LON0 + 1.0 + k * 1e-4, LAT0 + 1.0) for k in range(20)]
    result = match(graph, fixes)
    assert result.points == [] and result.traversals == []
