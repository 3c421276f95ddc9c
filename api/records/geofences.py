"""Geofences: the SQL of the geofences table and its GeoJSON Feature."""

from __future__ import annotations

from typing import Any

import asyncpg

from api.errors import Conflict, InvalidInput, NotFound
from geo.areas import Circle, PolygonArea, circle_to_traccar, polygon_to_traccar
from infrastructure.postgres import Conn


class InvalidGeometry(InvalidInput):
    code = "invalid_geometry"


_SELECT = """SELECT id, tenant_id, customer_id, name, kind, ST_X(center) AS center_lon,
                    ST_Y(center) AS center_lat, radius_m, ST_AsGeoJSON(geom)::json AS geometry,
                    created_at, updated_at
             FROM geofences"""


def traccar_area(r: asyncpg.Record) -> str:
    if r["kind"] == "circle" and r["center_lon"] is not None:
        return circle_to_traccar(Circle(r["center_lon"], r["center_lat"], r["radius_m"]))
    return polygon_to_traccar(r["geometry"]["coordinates"][0])


def feature(r: asyncpg.Record) -> dict[str, Any]:
    """Render a geofences row as a GeoJSON Feature (its Traccar area in the properties)."""
    circle = r["kind"] == "circle" and r["center_lon"] is not None
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": r["geometry"],
        "properties": {
            "name": r["name"],
            "kind": r["kind"],
            "customerId": r["customer_id"],
            "center": {"lat": r["center_lat"], "lon": r["center_lon"]} if circle else None,
            "radiusM": r["radius_m"] if circle else None,
            "area": traccar_area(r),
            "createdAt": r["created_at"].isoformat(),
            "updatedAt": r["updated_at"].isoformat(),
        },
    }


async def fetch_geofence(conn: Conn, tenant: str, geofence_id: str) -> asyncpg.Record:
    """Return the tenant's geofence by its id as text; NotFound otherwise."""
    if not geofence_id.isdigit() or len(geofence_id) > 18:
        raise NotFound("geofence not found")
    row = await conn.fetchrow(
        f"{_SELECT} WHERE id = $1 AND tenant_id = $2", int(geofence_id), tenant
    )
    if row is None:
        raise NotFound("geofence not found")
    return row


async def write_geofence(
    conn: Conn,
    tenant: str,
    name: str,
    customer_id: int | None,
    shape: Circle | PolygonArea,
    geofence_id: int | None = None,
) -> int:
    """Insert (or replace) a geofence; return its id. A shape PostGIS finds invalid is 422."""
    if isinstance(shape, Circle):
        geom_sql = """ST_Buffer(ST_SetSRID(ST_MakePoint($4, $5), 4326)::geography, $6,
                                'quad_segs=16')::geometry"""
        args: list[Any] = [shape.lon, shape.lat, shape.radius_m]
        kind = "circle"
    else:
        geom_sql = "ST_GeomFromText($4, 4326)"
        args = [shape.to_wkt()]
        kind = "polygon"
    center = "ST_SetSRID(ST_MakePoint($4, $5), 4326)" if kind == "circle" else "NULL"
    radius = "$6" if kind == "circle" else "NULL"
    n = len(args)
    try:
        if geofence_id is None:
            new_id = await conn.fetchval(
                f"""INSERT INTO geofences (tenant_id, name, customer_id, kind, center, radius_m,
                                           geom)
                    SELECT $1, $2, $3, '{kind}', {center}, {radius}, g FROM (SELECT {geom_sql}
                        AS g) s
                    WHERE ST_IsValid(g) RETURNING id""",
                tenant,
                name,
                customer_id,
                *args,
            )
        else:
            new_id = await conn.fetchval(
                f"""UPDATE geofences SET name = $2, customer_id = $3, kind = '{kind}',
                        center = {center}, radius_m = {radius}, geom = s.g, updated_at = now()
                    FROM (SELECT {geom_sql} AS g) s
                    WHERE id = ${n + 4} AND tenant_id = $1 AND ST_IsValid(s.g) RETURNING id""",
                tenant,
                name,
                customer_id,
                *args,
                geofence_id,
            )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("this customer already has a geofence") from exc
    if new_id is None:
        raise InvalidGeometry("polygon is not valid according to PostGIS (ST_IsValid)")
    return int(new_id)


async def list_geofences(
    conn: Conn, tenant: str, *, after: int | None, limit: int
) -> list[asyncpg.Record]:
    """Return the tenant's geofences by id after ``after``."""
    return list(
        await conn.fetch(
            f"""{_SELECT} WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id > $2)
            ORDER BY id LIMIT $3""",
            tenant,
            after,
            limit,
        )
    )


async def all_geofences(conn: Conn, tenant: str) -> list[asyncpg.Record]:
    """Return every geofence of the tenant by id."""
    return list(await conn.fetch(f"{_SELECT} WHERE tenant_id = $1 ORDER BY id", tenant))


async def geofences_by_id(conn: Conn, ids: list[int]) -> list[asyncpg.Record]:
    """Return these geofences by id."""
    return list(await conn.fetch(f"{_SELECT} WHERE id = ANY($1) ORDER BY id", ids))


async def delete_geofence(conn: Conn, geofence_id: int) -> None:
    """Delete a geofence; visits pointing at it keep their customer (the worker falls back to
    no geofence)."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE planned_visits SET geofence_id = NULL WHERE geofence_id = $1", geofence_id
        )
        await conn.execute("DELETE FROM geofences WHERE id = $1", geofence_id)
