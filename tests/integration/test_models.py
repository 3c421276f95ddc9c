"""analytics.models against the live schema of both backends: the GeoAlchemy2 tables agree
with what the migrations built (columns, types, geometry type, SRID), a model that drifts is
reported, and the spatial helpers answer what a direct computation says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import geopandas as gpd
import numpy as np
import pytest
from geoalchemy2 import Geometry
from geoalchemy2 import functions as gf
from pyproj import Geod
from sqlalchemy import Column, MetaData, Table, Text, and_, func, select
from sqlalchemy.engine import Engine

from analytics import models
from analytics.demo import DAY1, JANE, JOHN, build_demo_history, utc
from tests.conftest import Backend


@pytest.fixture(scope="module")
async def seeded(backend: Backend) -> None:
    async with backend.pool.acquire() as conn:
        await build_demo_history(conn)


@pytest.fixture(scope="module")
def engine(backend: Backend, seeded: None) -> Iterator[Engine]:
    e = models.engine(backend.settings)
    yield e
    e.dispose()


def test_every_model_matches_the_live_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        assert models.schema_differences(conn) == []
    names = set(models.metadata.tables)
    assert {
        "positions",
        "positions_1m",
        "driver_daily_motion",
        "driver_daily_stats",
        "cells_1h",
        "geofences",
        "planned_visits",
        "routes",
        "road_edges",
    } <= names


def test_drift_is_reported(engine: Engine) -> None:
    """Each kind of disagreement is found: a wrong SRID, a wrong geometry type, a wrong
    scalar type, a column the database lacks, one the model lacks, a missing relation."""
    md = MetaData()
    wrong_geofences = Table(
        "geofences",
        md,
        *(
            Column(c.name, c.type)
            for c in models.geofences.columns
            if c.name not in ("geom", "center", "radius_m", "name")
        ),
        Column("geom", Geometry("POLYGON", srid=3857)),
        Column("center", Geometry("POLYGON", srid=4326)),
        Column("name", models.BigInteger),
        Column("colour", Text),
    )
    missing = Table("positions_5m", md, Column("x", Text))
    with engine.connect() as conn:
        found = models.schema_differences(conn, [wrong_geofences, missing])
    assert sorted(found) == sorted(
        [
            "geofences.geom: model geometry(polygon,3857), database geometry(polygon,4326)",
            "geofences.center: model geometry(polygon,4326), database geometry(point,4326)",
            "geofences.name: model bigint, database text",
            "geofences.colour: in the model, not in the database",
            "geofences.radius_m: in the database, not in the model",
            "positions_5m: no such relation in the database",
        ]
    )


def test_geometry_helper_refuses_a_relation_without_one() -> None:
    with pytest.raises(ValueError, match="cells_1h has no geometry"):
        models.geometry(models.cells_1h)


def test_read_postgis_returns_the_stored_fixes(engine: Engine) -> None:
    p = models.positions
    stmt = (
        select(p.c.fix_time, p.c.lon, p.c.lat, p.c.speed_kmh, models.geometry(p))
        .where(p.c.driver_id == uuid.UUID(JANE))
        .where(p.c.fix_time >= utc(DAY1), p.c.fix_time < utc(DAY1) + timedelta(days=1))
        .order_by(p.c.fix_time)
    )
    gdf = gpd.read_postgis(stmt, engine, geom_col="geometry")
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count())
            .select_from(p)
            .where(p.c.driver_id == uuid.UUID(JANE))
            .where(p.c.fix_time >= utc(DAY1), p.c.fix_time < utc(DAY1) + timedelta(days=1))
        ).scalar_one()
    assert n > 500 and len(gdf) == n
    assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
    assert (gdf.geometry.geom_type == "Point").all()
    assert np.allclose(gdf.geometry.x, gdf["lon"]) and np.allclose(gdf.geometry.y, gdf["lat"])
    # JANE's scripted day (analytics.demo.SCRIPT) is sampled every 10 s
    steps = gdf["fix_time"].diff().dt.total_seconds().dropna()
    assert steps.median() == pytest.approx(10, abs=0.5)


def test_st_dwithin_counts_fixes_near_each_visit(engine: Engine) -> None:
    """ST_DWithin over geography (metres) agrees with geodesic distances computed here."""
    p, v, c = models.positions, models.planned_visits, models.customers
    day = (utc(DAY1), utc(DAY1) + timedelta(days=1))
    near = (
        select(v.c.sequence_number, func.count().label("fixes"))
        .select_from(v.join(c, c.c.id == v.c.customer_id))
        .join(
            p,
            and_(
                p.c.driver_id == v.c.driver_id,
                p.c.fix_time >= day[0],
                p.c.fix_time < day[1],
                gf.ST_DWithin(
                    models.geography(models.geometry(p)),
                    models.geography(models.geometry(c)),
                    100,
                ),
            ),
        )
        .where(v.c.driver_id == uuid.UUID(JOHN), v.c.scheduled_date == DAY1)
        .group_by(v.c.sequence_number)
        .order_by(v.c.sequence_number)
    )
    with engine.connect() as conn:
        got = {int(r[0]): int(r[1]) for r in conn.execute(near)}
        stops = conn.execute(
            select(v.c.sequence_number, c.c.lng, c.c.lat)
            .select_from(v.join(c, c.c.id == v.c.customer_id))
            .where(v.c.driver_id == uuid.UUID(JOHN), v.c.scheduled_date == DAY1)
        ).all()
        fixes = conn.execute(
            select(p.c.lon, p.c.lat).where(
                p.c.driver_id == uuid.UUID(JOHN), p.c.fix_time >= day[0], p.c.fix_time < day[1]
            )
        ).all()
    lon = np.array([f[0] for f in fixes])
    lat = np.array([f[1] for f in fixes])
    geod = Geod(ellps="WGS84")
    assert len(stops) >= 2
    for seq, clon, clat in stops:
        _, _, dist = geod.inv(np.full(lon.size, clon), np.full(lat.size, clat), lon, lat)
        # the stop's own fixes are within 100 m; allow for fixes on the threshold
        assert int((dist < 99.9).sum()) <= got.get(seq, 0) <= int((dist < 100.1).sum())
        assert got[seq] > 0


def test_st_intersects_with_an_envelope_is_a_bbox_filter(engine: Engine) -> None:
    p = models.positions
    box = (-74.0, 40.725, -73.97, 40.74)
    day = (utc(DAY1), utc(DAY1) + timedelta(days=2))
    inside = gf.ST_Intersects(models.geometry(p), gf.ST_MakeEnvelope(*box, models.SRID))
    in_window = and_(p.c.tenant_id == "tenant-1", p.c.fix_time >= day[0], p.c.fix_time < day[1])
    with engine.connect() as conn:
        by_function = conn.execute(
            select(func.count()).select_from(p).where(in_window, inside)
        ).scalar_one()
        by_columns = conn.execute(
            select(func.count())
            .select_from(p)
            .where(
                in_window,
                p.c.lon.between(box[0], box[2]),
                p.c.lat.between(box[1], box[3]),
            )
        ).scalar_one()
        total = conn.execute(select(func.count()).select_from(p).where(in_window)).scalar_one()
    assert 0 < by_function == by_columns < total
