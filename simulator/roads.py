"""Loading the simulator's road network into PostGIS (``road_edges``, migration 0010)."""

from __future__ import annotations

import asyncpg

from simulator.network import Edge, RoadNetwork, Segment


async def load_road_edges(
    conn: asyncpg.Connection,
    net: RoadNetwork,
    *,
    network: str | None = None,
    simplify: bool = False,
) -> int:
    """Replace the network's rows with the graph's directed edges; return how many.

    ``network`` (the rows' name) defaults to the network's own (``helsinki``,
    ``liechtenstein``); ``speed_kmh`` and ``cost_s`` are free flow. ``simplify``: one row per
    ``Segment`` (chains between junctions merged; Liechtenstein ~3,990 rows of mean 174 m
    instead of 21,209 of 33 m), class, name and way of its longest edge.
    """
    network = network or net.name
    parts: list[Edge | Segment] = list(net.segments()) if simplify else list(net.edges())
    rows = []
    for part in parts:
        main = part.main if isinstance(part, Segment) else part
        length, cost = part.length_m, part.free_flow_s
        rows.append(
            (
                network,
                part.u,
                part.v,
                main.osm_id,
                main.highway,
                main.name,
                length,
                length / cost * 3.6,
                cost,
                "LINESTRING(" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in part.coords) + ")",
            )
        )
    async with conn.transaction():
        await conn.execute("DELETE FROM road_edges WHERE network = $1", network)
        await conn.executemany(
            """INSERT INTO road_edges (network, source, target, osm_way_id, highway, name,
                                       length_m, speed_kmh, cost_s, geom)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ST_GeomFromText($10, 4326))""",
            rows,
        )
    return len(rows)
