"""The same history gives the same answers on TimescaleDB and on plain PostgreSQL.

Runs after ``test_analytics.py`` (file order), whose tests left both databases with the same
generated days after late data, and the TimescaleDB one compressed and through a retention
drop. Every analytics route is asked the same questions on both; counts must be equal, real
numbers within 0.1 % (the two backends sum in different orders).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import httpx
import pytest

from analytics.demo import DAY1, DAY2, JANE, JOHN, build_demo_history, utc
from analytics.refresh import ROLLUPS, refresh_range
from tests.conftest import Backend

# ids that each database generates itself (visits planned by the generator)
GENERATED_IDS = {"visitId", "visit_id", "id"}


def same(a: Any, b: Any, path: str = "$") -> None:
    """Assert two JSON values are equal, reals within 0.1 %."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in GENERATED_IDS:
                same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), path
        assert math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
async def both(
    pg: Any,
    plain_pg: Any,
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    tenant1_headers: dict[str, str],
    plain_headers: tuple[dict[str, str], dict[str, str]],
    settings: Any,
    plain_settings: Any,
) -> tuple[Backend, Backend]:
    backends = (
        Backend("timescale", settings, pg, client, tenant1_headers, {}),
        Backend("plain", plain_settings, plain_pg, plain_client, plain_headers[0], {}),
    )
    for b in backends:
        async with b.pool.acquire() as conn:
            await build_demo_history(conn)  # no-op where test_analytics built it already
            for name in ROLLUPS:
                await refresh_range(conn, name, utc(DAY1), utc(DAY2) + timedelta(days=1))
    return backends


QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    (f"/api/drivers/{JOHN}/playback", {"from": utc(DAY1), "to": utc(DAY2)}),
    (f"/api/drivers/{JOHN}/playback", {"from": utc(DAY1), "to": utc(DAY2, 23), "max_points": 300}),
    (f"/api/drivers/{JANE}/playback", {"from": utc(DAY1, 8), "to": utc(DAY1, 12)}),
    (
        "/api/playback",
        {"from": utc(DAY1, 8), "to": utc(DAY1, 11), "bbox": "-74.2,40.5,-73.7,40.9"},
    ),
    ("/api/playback", {"from": utc(DAY1, 6), "to": utc(DAY1, 18), "bbox": "-180,-80,180,80"}),
    *[
        (
            "/api/analytics/heatmap",
            {"from": utc(DAY1), "to": utc(DAY2), "metric": m, "resolution": r},
        )
        for m in ("positions", "dwell", "speed", "drivers")
        for r in (5, 7, 9)
    ],
    (
        "/api/analytics/heatmap",
        {"from": utc(DAY1, 9), "to": utc(DAY2, 15), "metric": "dwell", "format": "geojson"},
    ),
    ("/api/analytics/drivers/daily", {"date": str(DAY1)}),
    ("/api/analytics/drivers/daily", {"date": str(DAY2)}),
    (f"/api/drivers/{JOHN}/stats", {"from": str(DAY1), "to": str(DAY2)}),
    (f"/api/drivers/{JANE}/stats", {"from": str(DAY1), "to": str(DAY2)}),
    (f"/api/drivers/{JANE}/trips", {"date": str(DAY1)}),
    (f"/api/drivers/{JOHN}/trips", {"date": str(DAY2)}),
    (f"/api/drivers/{JANE}/export", {"date": str(DAY1), "format": "geojson"}),
    (f"/api/drivers/{JOHN}/export", {"date": str(DAY2), "format": "csv"}),
    (f"/api/drivers/{JOHN}/export", {"date": str(DAY1), "format": "gpx"}),
]


@pytest.mark.parametrize(
    ("path", "params"), QUESTIONS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(QUESTIONS)]
)
async def test_every_analytics_answer_is_the_same_on_both_backends(
    both: tuple[Backend, Backend], path: str, params: dict[str, Any]
) -> None:
    query = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in params.items()}
    answers = []
    for b in both:
        resp = await b.client.get(path, params=query, headers=b.tenant1_headers)
        assert resp.status_code == 200, (b.name, resp.text)
        answers.append(resp)
    ts, plain = answers
    assert ts.headers["content-type"] == plain.headers["content-type"]
    if ts.headers["content-type"].startswith(("text/csv", "application/gpx")):
        assert ts.text == plain.text
        return
    body = ts.json()
    assert body != {} and body != []
    same(body, plain.json())
