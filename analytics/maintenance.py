"""Entry of ``fleetpulse maintain``: partitions, retention and rollup refresh, once or looped."""

from __future__ import annotations

import asyncio
import json

from analytics.refresh import maintenance_loop, run_maintenance
from infrastructure.postgres import connect
from infrastructure.settings import Settings


async def maintain(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one maintenance pass and print its summary; with ``stop``, loop until it is set."""
    conn = await connect(settings.pg)
    try:
        if stop is None:
            summary = await run_maintenance(conn, settings.analytics, eta=settings.eta)
            print(json.dumps(summary))  # noqa: T201 - the command's output
        else:
            await maintenance_loop(conn, stop, settings.analytics, settings.eta)
    finally:
        await conn.close()
