"""A small generated history for tests, notebooks and demos: two days of six drivers in two
tenants (the seed's three plus three generated), one on a scripted day, with routes, visits,
ETAs and one geofence visit. Needs the seed data (``fleetpulse seed``)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np

from analytics.generate import (
    Drive,
    DriverSpec,
    Leg,
    Stop,
    day_start,
    noisy_eta,
    random_legs,
    script_day,
    track_records,
    write_tracks,
    write_visits,
)
from infrastructure.postgres import Conn

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"  # tenant-1
JANE = "a1b2c3d4-0002-4000-8000-000000000002"  # tenant-1, scripted on DAY1
BOB = "a1b2c3d4-0003-4000-8000-000000000003"  # tenant-2
DAY1 = date(2026, 3, 2)
DAY2 = date(2026, 3, 3)
LON0, LAT0 = -73.99, 40.73

SCRIPT_INTERVAL_S = 10.0  # JANE's scripted day on DAY1 is sampled every 10 s
SCRIPT: list[Leg] = [
    Stop(1800),
    Drive(5_000, 36, pauses_s=(0, 0, 60, 45)),
    Stop(1200),
    Drive(2_500, 30),
    Stop(600),
    Drive(3_000, 40, pauses_s=(0, 0, 90)),
    Stop(900),
]


async def build_demo_history(conn: Conn) -> list[DriverSpec]:
    """Insert drivers, positions, routes and visits; return the drivers (idempotent: a
    second call finds the data and only returns the drivers)."""
    specs = [
        DriverSpec("tenant-1", JOHN, "DEV001", LON0, LAT0),
        DriverSpec("tenant-1", JANE, "DEV002", LON0 + 0.02, LAT0),
        DriverSpec("tenant-2", BOB, "DEV003", LON0 + 0.01, LAT0 + 0.01),
    ]
    for k in range(3):
        specs.append(
            DriverSpec(
                "tenant-1" if k < 2 else "tenant-2",
                str(uuid.UUID(int=0xA1B2C3D4_0100_4000_8000_000000000000 + k)),
                f"GEN{k:03d}",
                LON0 - 0.01 * k,
                LAT0 + 0.005 * k,
            )
        )
    if await conn.fetchval("SELECT count(*) FROM positions WHERE fix_time::date = $1", DAY1):
        return specs
    await conn.execute("SELECT fleetpulse_ensure_position_partitions($1, $2)", DAY1, DAY2)
    for s in specs[3:]:
        await conn.execute(
            """INSERT INTO drivers (id, tenant_id, name, device_unique_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            uuid.UUID(s.driver_id),
            s.tenant_id,
            f"Generated {s.device_unique_id}",
            s.device_unique_id,
        )
    rng = np.random.default_rng(42)
    customer_base = 100_000
    for day in (DAY1, DAY2):
        for n, s in enumerate(specs):
            start = day_start(day, 8) + timedelta(seconds=float(rng.integers(0, 1800)))
            if s.driver_id == JANE and day == DAY1:
                track = script_day(
                    SCRIPT,
                    start=day_start(day, 8),
                    lon0=s.lon0,
                    lat0=s.lat0,
                    interval_s=SCRIPT_INTERVAL_S,
                    seed=7,
                )
            else:
                legs = random_legs(rng, hours=4)
                track = script_day(
                    legs,
                    start=start,
                    lon0=s.lon0,
                    lat0=s.lat0,
                    interval_s=float(rng.choice([10, 30])),
                    seed=int(rng.integers(1 << 30)),
                )
            next_visit = None
            if s.driver_id in (JOHN, BOB) or n == 3:
                customer_base += 1000
                next_visit = await write_visits(
                    conn, s, track, day, customer_id_base=customer_base, rng=rng
                )
                noisy_eta(track, rng)
            await write_tracks(conn, track_records(s, track, next_visit=next_visit))
            if s.driver_id == JOHN and day == DAY1:
                # The enrichment worker stamps the geofence a fix lies in; mark the first
                # visit's stop as inside the seed's "Downtown Warehouse" geofence.
                _, s0, e0, *_ = [tr for tr in track.truth if tr[0] == "stop"][1]
                await conn.execute(
                    """UPDATE positions SET geofence_id =
                           (SELECT id FROM geofences WHERE customer_id = 1)
                       WHERE driver_id = $1 AND fix_time >= $2 AND fix_time <= $3""",
                    uuid.UUID(JOHN),
                    datetime.fromtimestamp(s0, UTC),
                    datetime.fromtimestamp(e0, UTC),
                )
    return specs


def utc(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
