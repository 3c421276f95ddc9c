"""SQLAlchemy Core tables (GeoAlchemy2 geometry columns, EPSG:4326) for what analysts query.

The hot paths speak asyncpg and SQL files; these definitions are for notebooks, GeoPandas,
QGIS-minded users and anything that wants to compose queries in Python. They mirror the
migrations and are checked against the live schema on both database backends
(``schema_differences``, run by ``tests/integration/test_models.py``): a model that drifts
from the database fails the test suite.

Relations that store longitude/latitude columns rather than a geometry (``positions``,
``positions_1m``, ``customers``) are modelled as they are; ``geometry(table)`` returns the
point expression (a GeoAlchemy2 ``Geometry``), so spatial functions apply to them too.

Examples
--------
>>> import geopandas as gpd                                    # doctest: +SKIP
>>> from sqlalchemy import select
>>> from analytics.models import engine, geometry, positions
>>> stmt = select(positions.c.fix_time, positions.c.speed_kmh,
...               geometry(positions)).where(positions.c.tenant_id == "tenant-1").limit(5)
>>> gpd.read_postgis(stmt, engine(), geom_col="geometry")     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geography, Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Double,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Time,
    Uuid,
    func,
    inspect,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, TIMESTAMP
from sqlalchemy.engine import URL, Connection, Engine, create_engine
from sqlalchemy.sql.elements import ColumnElement

from infrastructure.settings import PostgresSettings, Settings

SRID = 4326

metadata = MetaData()


def _tz() -> TIMESTAMP:
    return TIMESTAMP(timezone=True)


def _point() -> Geometry:
    return Geometry(geometry_type="POINT", srid=SRID, spatial_index=False)


# Every fix, with its enrichment and movement labels (0002, 0003, 0016). Partitioned by day
# (plain) or a hypertable (TimescaleDB); no geometry column: see geometry(positions).
positions = Table(
    "positions",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("driver_id", Uuid, primary_key=True),
    Column("device_unique_id", Text, nullable=False),
    Column("fix_time", _tz(), primary_key=True),
    Column("received_at", _tz(), nullable=False),
    Column("lon", Double, nullable=False),
    Column("lat", Double, nullable=False),
    Column("speed_kmh", REAL),
    Column("course", REAL),
    Column("altitude", REAL),
    Column("accuracy", REAL),
    Column("valid", Boolean, nullable=False),
    Column("protocol", Text),
    Column("h3_cell", BigInteger, nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("route_id", Uuid),
    Column("next_visit_id", Uuid),
    Column("distance_to_next_m", REAL),
    Column("eta_s", REAL),
    Column("geofence_id", BigInteger),
    Column("step_s", REAL),
    Column("step_m", REAL),
    Column("motion", SmallInteger),
    Column("trip_m", REAL),
    Column("segment_start", SmallInteger),
    Column("stop_counted", Boolean),
)

# Per driver-minute (a continuous aggregate on TimescaleDB, a refreshed table on plain).
positions_1m = Table(
    "positions_1m",
    metadata,
    Column("tenant_id", Text),
    Column("driver_id", Uuid, primary_key=True),
    Column("bucket", _tz(), primary_key=True),
    Column("positions", BigInteger),
    Column("mean_speed_kmh", Double),
    Column("max_speed_kmh", REAL),
    Column("first_fix_time", _tz()),
    Column("last_fix_time", _tz()),
    Column("last_lon", Double),
    Column("last_lat", Double),
    Column("last_speed_kmh", REAL),
    Column("last_course", REAL),
    Column("distance_m", Double),
    Column("moving_s", Double),
    Column("idle_s", Double),
    Column("stopped_s", Double),
    Column("moving_fixes", BigInteger),
    Column("moving_speed_sum", Double),
    Column("trips", BigInteger),
    Column("stops", BigInteger),
)

_DAILY_MOTION = (
    ("positions", BigInteger),
    ("first_fix", _tz),
    ("last_fix", _tz),
    ("distance_m", Double),
    ("moving_s", Double),
    ("idle_s", Double),
    ("stopped_s", Double),
    ("mean_speed_kmh", Double),
    ("max_speed_kmh", Double),
    ("trips", Integer),
    ("stops", Integer),
)

# Per driver-UTC-day movement sums, stacked on positions_1m.
driver_daily_motion = Table(
    "driver_daily_motion",
    metadata,
    Column("tenant_id", Text),
    Column("driver_id", Uuid, primary_key=True),
    Column("bucket", _tz(), primary_key=True),
    *(Column(name, kind()) for name, kind in _DAILY_MOTION),
)

# driver_daily_motion + the day's visits (a view on both backends).
driver_daily_stats = Table(
    "driver_daily_stats",
    metadata,
    Column("tenant_id", Text),
    Column("driver_id", Uuid, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("bucket", _tz()),
    *(Column(name, kind()) for name, kind in _DAILY_MOTION),
    Column("visits_planned", Integer),
    Column("visits_completed", Integer),
    Column("on_time_share", Double),
)

# Per tenant-hour-H3 res-9 cell (no geometry: geo.cells.cell_to_boundary draws a cell).
cells_1h = Table(
    "cells_1h",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("bucket", _tz(), primary_key=True),
    Column("h3_cell", BigInteger, primary_key=True),
    Column("positions", BigInteger),
    Column("drivers", BigInteger),
    Column("driver_ids", ARRAY(Uuid)),
    Column("mean_speed_kmh", Double),
    Column("dwell_s", Double),
)

drivers = Table(
    "drivers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("device_unique_id", Text, nullable=False),
    Column("phone", Text),
    Column("email", Text),
    Column("vehicle_type", Text),
    Column("vehicle_plate", Text),
    Column("status", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", _tz(), nullable=False),
    Column("updated_at", _tz(), nullable=False),
)

# The CDC cache of the source of truth's customers; lng/lat, no geometry column.
customers = Table(
    "customers",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("account_id", BigInteger),
    Column("name", Text, nullable=False),
    Column("address", Text),
    Column("lat", Double, nullable=False),
    Column("lng", Double, nullable=False),
    Column("geofence_radius_m", Integer, nullable=False),
    Column("customer_type", Text),
    Column("active", Boolean, nullable=False),
    Column("updated_at", _tz(), nullable=False),
    Column("contact_name", Text),
    Column("contact_phone", Text),
    Column("contact_email", Text),
    Column("source_position", ARRAY(BigInteger)),
    Column("source_ts", _tz()),
    Column("synced_at", _tz()),
    Column("deleted_at", _tz()),
)

geofences = Table(
    "geofences",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("customer_id", BigInteger),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("center", _point()),
    Column("radius_m", Double),
    Column(
        "geom",
        Geometry(geometry_type="POLYGON", srid=SRID, spatial_index=False),
        nullable=False,
    ),
    Column("created_at", _tz(), nullable=False),
    Column("updated_at", _tz(), nullable=False),
)

routes = Table(
    "routes",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("driver_id", Uuid, nullable=False),
    Column("name", Text),
    Column("scheduled_date", Date, nullable=False),
    Column("status", Text, nullable=False),
    Column("planned_geom", Geometry(geometry_type="LINESTRING", srid=SRID, spatial_index=False)),
    Column("geom_source", Text),
    Column("started_at", _tz()),
    Column("completed_at", _tz()),
    Column("created_at", _tz(), nullable=False),
    Column("updated_at", _tz(), nullable=False),
    Column("completed_stops", Integer, nullable=False),
    Column("total_stops", Integer, nullable=False),
)

planned_visits = Table(
    "planned_visits",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("route_id", Uuid, nullable=False),
    Column("driver_id", Uuid, nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("sequence_number", Integer, nullable=False),
    Column("visit_type", Text, nullable=False),
    Column("scheduled_date", Date, nullable=False),
    Column("time_window_start", Time),
    Column("time_window_end", Time),
    Column("status", Text, nullable=False),
    Column("arrived_at", _tz()),
    Column("departed_at", _tz()),
    Column("completed_at", _tz()),
    Column("notes", Text),
    Column("created_at", _tz(), nullable=False),
    Column("updated_at", _tz(), nullable=False),
    Column("geofence_id", BigInteger),
    Column("eta_at", _tz()),
)

visit_completions = Table(
    "visit_completions",
    metadata,
    Column("visit_id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("route_id", Uuid, nullable=False),
    Column("driver_id", Uuid, nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("scheduled_date", Date, nullable=False),
    Column("arrived_at", _tz()),
    Column("departed_at", _tz()),
    Column("completed_at", _tz(), nullable=False),
    Column("dwell_s", Double),
    Column("on_time", Boolean),
)

# Latest position per driver (the live snapshot).
driver_positions = Table(
    "driver_positions",
    metadata,
    Column("driver_id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("device_unique_id", Text, nullable=False),
    Column("fix_time", _tz(), nullable=False),
    Column("received_at", _tz(), nullable=False),
    Column("lon", Double, nullable=False),
    Column("lat", Double, nullable=False),
    Column("geom", _point(), nullable=False),
    Column("speed_kmh", REAL),
    Column("course", REAL),
    Column("altitude", REAL),
    Column("accuracy", REAL),
    Column("valid", Boolean, nullable=False),
    Column("h3_cell", BigInteger, nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("updated_at", _tz(), nullable=False),
    Column("route_id", Uuid),
    Column("next_visit_id", Uuid),
    Column("distance_to_next_m", REAL),
    Column("eta_s", REAL),
    Column("geofence_id", BigInteger),
)

# Directed street segments of the loaded road networks (0010).
road_edges = Table(
    "road_edges",
    metadata,
    Column("network", Text, primary_key=True),
    Column("source", BigInteger, primary_key=True),
    Column("target", BigInteger, primary_key=True),
    Column("osm_way_id", BigInteger, nullable=False),
    Column("highway", Text, nullable=False),
    Column("name", Text),
    Column("length_m", Double, nullable=False),
    Column("speed_kmh", Double, nullable=False),
    Column("cost_s", Double, nullable=False),
    Column(
        "geom",
        Geometry(geometry_type="LINESTRING", srid=SRID, spatial_index=False),
        nullable=False,
    ),
    Column("loaded_at", _tz(), nullable=False),
)

# Base-map features from the OpenStreetMap extract (0018): the vector tiles' "base" layers.
basemap_features = Table(
    "basemap_features",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("source", Text, nullable=False),
    Column("layer", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("name", Text),
    Column("osm_id", BigInteger, nullable=False),
    Column(
        "geom",
        Geometry(geometry_type="GEOMETRY", srid=SRID, spatial_index=False),
        nullable=False,
    ),
    Column("loaded_at", _tz(), nullable=False),
)

# Relations with longitude/latitude columns instead of a geometry: (lon, lat) column names.
_POINT_COLUMNS = {
    "positions": ("lon", "lat"),
    "positions_1m": ("last_lon", "last_lat"),
    "customers": ("lng", "lat"),
    "driver_positions": ("lon", "lat"),
}
# Relations with a geometry column: its name.
_GEOMETRY_COLUMNS = {
    "geofences": "geom",
    "routes": "planned_geom",
    "road_edges": "geom",
    "basemap_features": "geom",
}


def geometry(table: Table, name: str = "geometry") -> ColumnElement[Any]:
    """Return the relation's geometry as a labelled GeoAlchemy2 expression (EPSG:4326).

    A point built from the longitude/latitude columns where the relation stores those
    (``positions``, ``positions_1m``'s last fix, ``customers``, ``driver_positions``), else
    the geometry column itself.

    Examples
    --------
    >>> from analytics.models import geofences, positions
    >>> str(geometry(positions).compile()).startswith("ST_SetSRID(ST_MakePoint(")
    True
    >>> geometry(geofences).name
    'geometry'
    """
    if table.name in _POINT_COLUMNS:
        lon, lat = _POINT_COLUMNS[table.name]
        point = func.ST_SetSRID(func.ST_MakePoint(table.c[lon], table.c[lat]), SRID)
        return type_coerce(point, _point()).label(name)
    if table.name in _GEOMETRY_COLUMNS:
        return table.c[_GEOMETRY_COLUMNS[table.name]].label(name)
    raise ValueError(f"{table.name} has no geometry")


def geography(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    """Return a geometry expression as geography, for distances in metres (``ST_DWithin``).

    Examples
    --------
    >>> from analytics.models import positions
    >>> "geography" in str(geography(geometry(positions)).compile())
    True
    """
    from sqlalchemy import cast

    return cast(expr, Geography(srid=SRID))


def url(settings: PostgresSettings, *, driver: str = "psycopg") -> URL:
    """Return the SQLAlchemy URL of the project's database (``psycopg``: sync psycopg 3)."""
    return URL.create(
        f"postgresql+{driver}",
        username=settings.user,
        password=settings.password.get_secret_value(),
        host=settings.host,
        port=settings.port,
        database=settings.database,
    )


def engine(settings: Settings | PostgresSettings | None = None, **kwargs: Any) -> Engine:
    """Return a synchronous SQLAlchemy engine (psycopg 3) from the project's settings.

    Settings default to ``Settings()`` (the environment and ``.env``, like every process);
    ``geopandas.read_postgis`` and ``pandas.read_sql`` take the engine or a connection.

    Examples
    --------
    >>> e = engine()                                  # doctest: +SKIP
    >>> with e.connect() as c:                        # doctest: +SKIP
    ...     c.execute(select(func.count()).select_from(positions)).scalar()
    """
    pg = (settings or Settings()).pg if not isinstance(settings, PostgresSettings) else settings
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url(pg), **kwargs)


def _type_name(column_type: Any, bind: Connection) -> str:
    return str(column_type.compile(dialect=bind.dialect)).lower().replace(" ", "")


def schema_differences(bind: Connection, tables: list[Table] | None = None) -> list[str]:
    """Return how the live schema differs from the models, one sentence per difference.

    Compares, per relation (tables, views, continuous aggregates), the column names both
    ways and each column's type as PostgreSQL spells it, which for geometries includes the
    geometry type and the SRID. Nullability is not compared (views report none). Empty
    when everything agrees.

    Examples
    --------
    >>> with engine().connect() as c:                 # doctest: +SKIP
    ...     assert schema_differences(c) == []
    """
    inspector = inspect(bind)
    found: list[str] = []
    for table in tables if tables is not None else list(metadata.tables.values()):
        if not inspector.has_table(table.name):
            found.append(f"{table.name}: no such relation in the database")
            continue
        live = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in live:
                found.append(f"{table.name}.{column.name}: in the model, not in the database")
                continue
            want, have = _type_name(column.type, bind), _type_name(live[column.name], bind)
            if want != have:
                found.append(f"{table.name}.{column.name}: model {want}, database {have}")
        found.extend(
            f"{table.name}.{name}: in the database, not in the model"
            for name in live
            if name not in table.columns
        )
    return found
