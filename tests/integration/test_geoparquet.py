"""GeoParquet exports on both backends: a driver-day (``format=geoparquet``) and a fleet
window (``/api/exports/fleet``) read back with GeoPandas and with DuckDB (plain Parquet,
the WKB points decoded by shapely: DuckDB's spatial extension would be a download at run
time) give identical values, equal to the stored fixes; bad input gets 4xx JSON."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from analytics import geoparquet
from analytics.demo import BOB, DAY1, DAY2, JANE, JOHN, build_demo_history, utc
from analytics.errors import InvalidQuery
from tests.conftest import Backend

BBOX = (-74.0, 40.72, -73.96, 40.745)


@pytest.fixture(scope="module")
async def seeded(backend: Backend) -> None:
    async with backend.pool.acquire() as conn:
        await build_demo_history(conn)


async def stored(backend: Backend, where: str, *args: Any) -> pd.DataFrame:
    async with backend.pool.acquire() as conn:
        rows = await conn.fetch(
            f"""SELECT driver_id::text AS driver_id, fix_time, lon, lat, speed_kmh, h3_cell
                FROM positions WHERE {where} ORDER BY fix_time, driver_id""",
            *args,
        )
    return pd.DataFrame([dict(r) for r in rows])


def read_both(body: bytes, tmp_path: Path) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The file as GeoPandas reads it, and as DuckDB reads it (geometry decoded here)."""
    gdf = gpd.read_parquet(io.BytesIO(body))
    path = tmp_path / "export.parquet"
    path.write_bytes(body)
    con = duckdb.connect()
    try:
        df = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
    finally:
        con.close()
    df["geometry"] = shapely.from_wkb(df["geometry"].map(bytes).to_numpy())
    return gdf, df


def assert_identical(gdf: gpd.GeoDataFrame, df: pd.DataFrame) -> None:
    assert list(gdf.columns) == list(df.columns)
    for col in gdf.columns:
        if col == "geometry":
            assert shapely.equals_exact(
                gdf.geometry.to_numpy(), df["geometry"].to_numpy(), tolerance=0
            ).all()
        elif col == "fix_time":
            assert (pd.to_datetime(gdf[col], utc=True) == pd.to_datetime(df[col], utc=True)).all()
        else:
            left, right = gdf[col].to_numpy(), df[col].to_numpy()
            same = (left == right) | (pd.isna(left) & pd.isna(right))
            assert same.all(), col


def assert_matches_stored(gdf: gpd.GeoDataFrame, expected: pd.DataFrame) -> None:
    assert len(gdf) == len(expected) > 0
    assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
    assert (gdf.geometry.geom_type == "Point").all()
    assert list(gdf["driver_id"]) == list(expected["driver_id"])
    assert (pd.to_datetime(gdf["fix_time"], utc=True) == expected["fix_time"]).all()
    assert np.array_equal(gdf.geometry.x.to_numpy(), expected["lon"].to_numpy())
    assert np.array_equal(gdf.geometry.y.to_numpy(), expected["lat"].to_numpy())
    assert np.array_equal(gdf["h3_cell"].to_numpy(), expected["h3_cell"].to_numpy())
    assert np.allclose(
        gdf["speed_kmh"].to_numpy(dtype=float),
        expected["speed_kmh"].to_numpy(dtype=float),
        equal_nan=True,
    )


async def test_driver_day_round_trips(backend: Backend, seeded: None, tmp_path: Path) -> None:
    resp = await backend.client.get(
        f"/api/drivers/{JANE}/export",
        params={"date": str(DAY1), "format": "geoparquet"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.apache.parquet"
    assert f'filename="driver-{JANE}-{DAY1}.parquet"' in resp.headers["content-disposition"]
    gdf, df = read_both(resp.content, tmp_path)
    assert_identical(gdf, df)
    expected = await stored(
        backend,
        "driver_id = $1 AND fix_time >= $2 AND fix_time < $3",
        uuid.UUID(JANE),
        utc(DAY1),
        utc(DAY2),
    )
    assert_matches_stored(gdf, expected)
    assert int(resp.headers["x-rows"]) == len(gdf)
    # the same fixes as the CSV export of the day
    csv = await backend.client.get(
        f"/api/drivers/{JANE}/export",
        params={"date": str(DAY1), "format": "csv"},
        headers=backend.tenant1_headers,
    )
    rows = pd.read_csv(io.StringIO(csv.text))
    assert len(rows) == len(gdf)
    assert np.allclose(rows["lon"], gdf.geometry.x, atol=1e-7)


async def test_fleet_window_round_trips(backend: Backend, seeded: None, tmp_path: Path) -> None:
    start, end = utc(DAY1), utc(DAY2) + timedelta(days=1)
    resp = await backend.client.get(
        "/api/exports/fleet",
        params={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "bbox": ",".join(map(str, BBOX)),
        },
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200, resp.text
    gdf, df = read_both(resp.content, tmp_path)
    assert_identical(gdf, df)
    expected = await stored(
        backend,
        """tenant_id = 'tenant-1' AND fix_time >= $1 AND fix_time < $2
           AND lon BETWEEN $3 AND $5 AND lat BETWEEN $4 AND $6""",
        start,
        end,
        *BBOX,
    )
    assert_matches_stored(gdf, expected)
    assert set(gdf["driver_id"]) >= {JOHN, JANE} and BOB not in set(gdf["driver_id"])
    x0, y0, x1, y1 = gdf.total_bounds
    assert BBOX[0] <= x0 and BBOX[1] <= y0 and x1 <= BBOX[2] and y1 <= BBOX[3]
    # without a bbox: the tenant's whole window; tenant-2 sees only its own
    whole = await backend.client.get(
        "/api/exports/fleet",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=backend.tenant2_headers,
    )
    assert whole.status_code == 200
    theirs = gpd.read_parquet(io.BytesIO(whole.content))
    assert len(theirs) > 0 and BOB in set(theirs["driver_id"])
    assert not {JOHN, JANE} & set(theirs["driver_id"])


async def test_an_empty_window_is_a_valid_empty_file(
    backend: Backend, seeded: None, tmp_path: Path
) -> None:
    resp = await backend.client.get(
        "/api/exports/fleet",
        params={"from": "2020-01-01T00:00Z", "to": "2020-01-02T00:00Z"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200 and resp.headers["x-rows"] == "0"
    gdf, df = read_both(resp.content, tmp_path)
    assert len(gdf) == len(df) == 0 and gdf.crs is not None and gdf.crs.to_epsg() == 4326


async def test_more_fixes_than_allowed_is_refused(backend: Backend, seeded: None) -> None:
    async with backend.pool.acquire() as conn:
        with pytest.raises(InvalidQuery, match="more than 10 fixes"):
            await geoparquet.export_fixes(
                conn, tenant="tenant-1", start=utc(DAY1), end=utc(DAY2), max_rows=10
            )


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "2026-03-02T00:00Z", "to": "2026-03-01T00:00Z"}, 400),  # reversed
        ({"from": "2026-03-01T00:00Z", "to": "2026-03-09T00:00Z"}, 400),  # over 7 days
        ({"from": "yesterday", "to": "2026-03-03T00:00Z"}, 400),
        ({"from": "2026-03-02T00:00Z", "to": "2026-03-03T00:00Z", "bbox": "1,2,3"}, 400),
        ({"from": "2026-03-02T00:00Z", "to": "2026-03-03T00:00Z", "bbox": "10,0,5,1"}, 400),
        ({"from": "2026-03-02T00:00Z", "to": "2026-03-03T00:00Z", "bbox": "0,0,1,95"}, 400),
        ({"from": "2026-03-02T00:00Z", "to": "2026-03-03T00:00Z", "format": "shp"}, 422),
        ({"to": "2026-03-03T00:00Z"}, 422),
    ],
)
async def test_fleet_export_bad_input(
    backend: Backend, params: dict[str, str], status: int
) -> None:
    resp = await backend.client.get(
        "/api/exports/fleet", params=params, headers=backend.tenant1_headers
    )
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert {"error", "message"} <= resp.json().keys()


async def test_export_needs_a_token_and_the_tenant(backend: Backend, seeded: None) -> None:
    params = {"from": "2026-03-02T00:00Z", "to": "2026-03-03T00:00Z"}
    resp = await backend.client.get("/api/exports/fleet", params=params)
    assert resp.status_code == 401 and "error" in resp.json()
    # another tenant's driver: 404, nothing exported
    resp = await backend.client.get(
        f"/api/drivers/{BOB}/export",
        params={"date": str(DAY1), "format": "geoparquet"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 404 and resp.json()["error"]
    resp = await backend.client.get(
        f"/api/drivers/{JANE}/export",
        params={"date": "2026-02-30", "format": "geoparquet"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 400 and resp.json()["error"]
