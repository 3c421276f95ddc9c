"""GeoParquet exports of raw fixes: a driver-day or a fleet window (bbox + time).

One schema for both: a row per fix, the point as WKB in ``geometry`` (GeoParquet 1.1
metadata, EPSG:4326 as PROJJSON), readable by GeoPandas (``geopandas.read_parquet``),
DuckDB, QGIS/GDAL and anything that reads Parquet. The rows are read in chunks from a
server-side cursor and written as Parquet row groups, so memory is bounded by the output
(capped by ``max_rows``) rather than by Python objects per row.

Examples
--------
>>> import geopandas as gpd, io                                     # doctest: +SKIP
>>> gpd.read_parquet(io.BytesIO(body)).plot(column="speed_kmh")    # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from analytics.errors import InvalidQuery
from analytics.queries import BBox, check_bbox
from infrastructure.postgres import Conn

MEDIA_TYPE = "application/vnd.apache.parquet"
CHUNK_ROWS = 50_000

# (column, SQL expression, Arrow type); lon/lat become the geometry.
_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("driver_id", "driver_id::text", pa.string()),
    ("device_unique_id", "device_unique_id", pa.string()),
    ("fix_time", "fix_time", pa.timestamp("us", tz="UTC")),
    ("speed_kmh", "speed_kmh", pa.float32()),
    ("course", "course", pa.float32()),
    ("accuracy", "accuracy", pa.float32()),
    ("valid", "valid", pa.bool_()),
    ("h3_cell", "h3_cell", pa.int64()),
    ("motion", "motion", pa.int16()),
    ("route_id", "route_id::text", pa.string()),
)


@cache
def schema() -> pa.Schema:
    """Return the exports' Arrow schema with its GeoParquet ``geo`` metadata."""
    from pyproj import CRS

    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Point"],
                "crs": CRS.from_epsg(4326).to_json_dict(),
            }
        },
    }
    fields = [pa.field(name, kind) for name, _, kind in _COLUMNS]
    fields.append(pa.field("geometry", pa.binary()))
    return pa.schema(fields, metadata={"geo": json.dumps(geo)})


def _query(*, driver: bool, bbox: bool) -> str:
    select = ", ".join(expr for _, expr, _ in _COLUMNS)
    where = ["tenant_id = $1", "fix_time >= $2", "fix_time < $3"]
    if driver:
        where.append("driver_id = $4")
    if bbox:
        n = 5 if driver else 4
        where.append(f"lon BETWEEN ${n} AND ${n + 2} AND lat BETWEEN ${n + 1} AND ${n + 3}")
    return (
        f"SELECT {select}, lon, lat FROM positions WHERE {' AND '.join(where)}"
        " ORDER BY fix_time, driver_id"
    )


def _batch(rows: list[Any]) -> pa.RecordBatch:
    arrays: list[pa.Array] = [
        pa.array([r[i] for r in rows], type=kind) for i, (_, _, kind) in enumerate(_COLUMNS)
    ]
    n = len(_COLUMNS)
    lon = np.fromiter((r[n] for r in rows), dtype=np.float64, count=len(rows))
    lat = np.fromiter((r[n + 1] for r in rows), dtype=np.float64, count=len(rows))
    arrays.append(pa.array(shapely.to_wkb(shapely.points(lon, lat)), type=pa.binary()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema())


async def export_fixes(
    conn: Conn,
    *,
    tenant: str,
    start: datetime,
    end: datetime,
    driver_id: uuid.UUID | None = None,
    bbox: BBox | None = None,
    max_rows: int,
) -> tuple[bytes, int]:
    """Return a GeoParquet file of the tenant's fixes in [start, end) and its row count.

    Optionally one driver's and/or those inside ``bbox`` (min lon, min lat, max lon, max
    lat); ordered by fix time, then driver. InvalidQuery when more than ``max_rows`` fixes
    match (narrow the window or the box) or the box is invalid.
    """
    args: list[Any] = [tenant, start, end]
    if driver_id is not None:
        args.append(driver_id)
    if bbox is not None:
        check_bbox(bbox)
        args.extend(bbox)
    out = io.BytesIO()
    count = 0
    with pq.ParquetWriter(out, schema(), compression="zstd") as writer:
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor(
                _query(driver=driver_id is not None, bbox=bbox is not None), *args
            )
            while rows := await cursor.fetch(CHUNK_ROWS):
                count += len(rows)
                if count > max_rows:
                    raise InvalidQuery(
                        f"more than {max_rows} fixes match: narrow the window or the bbox"
                    )
                writer.write_batch(_batch(rows))
        if count == 0:
            writer.write_table(schema().empty_table())
    return out.getvalue(), count
