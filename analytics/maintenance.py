"""Entry of ``fleetpulse maintain``: partitions, retention and rollup refresh, once or looped."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from analytics.refresh import maintenance_loop, run_maintenance
from infrastructure.postgres import connect
from infrastructure.settings import Settings


async def maintain(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one maintenance pass and print its summary; with ``stop``, loop until it is set."""
    cfg = settings.analytics
    conn = await connect(settings.pg)
    try:
        if stop is None:
            summary = await run_maintenance(
                conn,
                retention_days=cfg.retention_days,
                ahead_days=cfg.partitions_ahead_days,
                late_window=timedelta(seconds=cfg.late_window_s),
            )
            print(json.dumps(summary))  # noqa: T201 - the command's output
        else:
            await maintenance_loop(
                conn,
                stop,
                interval_s=cfg.refresh_interval_s,
                retention_days=cfg.retention_days,
                ahead_days=cfg.partitions_ahead_days,
                late_window=timedelta(seconds=cfg.late_window_s),
            )
    finally:
        await conn.close()
