"""Vector-tile benchmark: every ``base`` tile of the Helsinki extract, per zoom, cold and cached.

A dedicated database (``--database``, default ``fp_bench_tiles``; never the dev or test
databases) on the main cluster (or ``--plain``: the plain-PostgreSQL cluster) is created,
migrated and loaded with the base map (``infrastructure.basemap``). Then the app runs
in-process (its lifespan, the real services) and, for each zoom in ``--zooms``, every tile
covering the extract's bounding box is requested through HTTP (ASGI transport: routing,
auth, the tile cache) twice: the first request renders it in PostGIS (``cold``: not in the
api's tile cache; PostgreSQL's own buffers are warm after the load, as on a running server),
the second is answered from the cache (``cached``). ``--rounds`` repeats the whole pass
with a fresh app (cache and pool); each round's first request (a new database backend
initialising PostGIS and PROJ) is reported apart as ``first_request_ms``. Prints one JSON
document: per zoom the tile count, bytes and p50/p99/max milliseconds cold and cached. Example::

    .venv/bin/python -m bench.tiles --zooms 12-18 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from api.main import create_app
from api.security import Principal, issue_access_token
from bench.stats import summary
from infrastructure.basemap import ensure_basemap
from infrastructure.migrate import migrate
from infrastructure.postgres import connect
from infrastructure.settings import Settings


def tile_range(bbox: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    """Every (x, y) of zoom z that covers bbox (min lon, min lat, max lon, max lat)."""

    def xy(lon: float, lat: float) -> tuple[int, int]:
        n = 2**z
        x = int((lon + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        return x, y

    x0, y1 = xy(bbox[0], bbox[1])
    x1, y0 = xy(bbox[2], bbox[3])
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


async def prepare(settings: Settings) -> tuple[float, float, float, float]:
    admin = await connect(settings.pg, database="postgres")
    try:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", settings.pg.database
        )
        if not exists:
            await admin.execute(f'CREATE DATABASE "{settings.pg.database}"')
    finally:
        await admin.close()
    conn = await connect(settings.pg)
    try:
        await migrate(conn)
        started = time.perf_counter()
        counts = await ensure_basemap(conn)
        if counts is not None:
            print(
                f"base map loaded in {time.perf_counter() - started:.1f} s: {counts}",
                file=sys.stderr,
            )
        row = await conn.fetchrow(
            """SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
               FROM (SELECT ST_Extent(geom) AS e FROM basemap_features
                     WHERE source = 'helsinki' AND layer = 'buildings') s"""
        )
        return (row[0], row[1], row[2], row[3])
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    port = base.stack.plain_pg_port if args.plain else base.pg.port
    settings = base.model_copy(
        update={
            "environment": "test",  # the bench signs its own token with the settings' secret
            "pg": base.pg.model_copy(update={"database": args.database, "port": port}),
        }
    )
    bbox = await prepare(settings)
    first, last = (int(v) for v in args.zooms.split("-"))
    token = issue_access_token(
        Principal(str(uuid.uuid4()), "tenant-1", "admin", "bench@example.com"), settings.auth
    )
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, Any] = {}
    warmups: list[float] = []
    for _ in range(args.rounds):
        app = create_app(settings)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                # A new server process's first tile pays for connecting and for PostGIS/PROJ
                # initialising in the database backend: measured apart, on an empty tile.
                t0 = time.perf_counter()
                (await c.get("/api/tiles/base/0/0/0.mvt", headers=headers)).raise_for_status()
                warmups.append((time.perf_counter() - t0) * 1000)
                for z in range(first, last + 1):
                    entry = results.setdefault(
                        str(z), {"tiles": 0, "bytes": [], "cold": [], "cached": []}
                    )
                    tiles = tile_range(bbox, z)
                    entry["tiles"] = len(tiles)
                    for x, y in tiles:
                        for kind in ("cold", "cached"):
                            t0 = time.perf_counter()
                            resp = await c.get(f"/api/tiles/base/{z}/{x}/{y}.mvt", headers=headers)
                            entry[kind].append((time.perf_counter() - t0) * 1000)
                            resp.raise_for_status()
                        entry["bytes"].append(len(resp.content))
                    print(f"zoom {z}: {len(tiles)} tiles", file=sys.stderr)
    return {
        "backend": "plain" if args.plain else "timescale-cluster",
        "bbox": [round(v, 5) for v in bbox],
        "rounds": args.rounds,
        "first_request_ms": [round(v, 1) for v in warmups],
        "zooms": {
            z: {
                "tiles": e["tiles"],
                "mean_kb": round(statistics.mean(e["bytes"]) / 1024, 1),
                "max_kb": round(max(e["bytes"]) / 1024, 1),
                "cold": summary(e["cold"]),
                "cached": summary(e["cached"]),
            }
            for z, e in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="fp_bench_tiles")
    parser.add_argument("--plain", action="store_true", help="on the plain-PostgreSQL cluster")
    parser.add_argument("--zooms", default="12-18", help="first-last zoom")
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
