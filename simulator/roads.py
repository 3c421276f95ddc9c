"""Loading the simulator's road network into PostGIS (``road_edges``, migration 0010)."""

from __future__ import annotations

import asyncpg

from simulator.network import RoadNetwork


async def load_road_edges(
    conn: asyncpg.Connection, net: RoadNetwork, *, network: str | None = None
) -> int:
    """Replace the network's rows with the graph's directed edges; return how many.

    ``network`` (the rows' name) defaults to the network's own (``helsinki``,
    ``liechtenstein``); ``speed_kmh`` and ``cost_s`` are free flow.
    """
    network = network or net.name
    rows = [
        (
            network,
            e.u,
            e.v,
            e.osm_id,
            e.highway,
            e.name,
            e.length_m,
            e.speed_ms * 3.6,
            e.length_m / e.speed_ms,
            "LINESTRING(" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in e.coords) + ")",
        )
        for e in net.edges()
    ]
    async with conn.transaction():
        await conn.execute("DELETE FROM road_edges WHERE network = $1", network)
        await conn.executemany(
            """INSERT INTO road_edges (network, source, target, osm_way_id, highway, name,
                                       length_m, speed_kmh, cost_s, geom)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ST_GeomFromText($10, 4326))""",
            rows,
        )
    return len(rows)
