"""Demo data from the seed system: 2 tenants, 3 drivers, 5 customers with geofences, 2 admins.

Idempotent: running it again changes nothing that is already there.
"""

from __future__ import annotations

import hashlib

import asyncpg
from argon2 import PasswordHasher

from infrastructure.secrets import random_api_key

TENANTS = [
    ("tenant-1", "Tenant One", "traccar-key-tenant-1"),
    ("tenant-2", "Tenant Two", "traccar-key-tenant-2"),
]

DRIVERS = [
    ("a1b2c3d4-0001-4000-8000-000000000001", "tenant-1", "John Smith", "DEV001", "van", "ABC-1234"),
    ("a1b2c3d4-0002-4000-8000-000000000002", "tenant-1", "Jane Doe", "DEV002", "truck", "DEF-5678"),
    ("a1b2c3d4-0003-4000-8000-000000000003", "tenant-2", "Bob Wilson", "DEV003", "van", "GHI-9012"),
]

# (id, tenant, name, lat, lng, geofence radius m, type)
CUSTOMERS = [
    (1, "tenant-1", "Downtown Warehouse", 40.7128, -74.006, 150, "warehouse"),
    (2, "tenant-1", "Midtown Office", 40.7549, -73.984, 100, "office"),
    (3, "tenant-1", "Brooklyn Store", 40.686, -73.977, 100, "retail"),
    (4, "tenant-2", "Queens Distribution", 40.7282, -73.7949, 200, "warehouse"),
    (5, "tenant-2", "Bronx Retail", 40.837, -73.8654, 100, "retail"),
]

USERS = [
    ("tenant-1", "admin@tenant1.com", "admin123", "Admin Tenant 1", "admin"),
    ("tenant-2", "admin@tenant2.com", "admin123", "Admin Tenant 2", "admin"),
]


def api_key_digest(key: str) -> str:
    """Return the sha256 hex digest under which a tenant's API key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


async def seed(conn: asyncpg.Connection, *, random_keys: bool = False) -> dict[str, str]:
    """Insert the demo data where missing; return the API keys of the tenants it created.

    The seed system's per-tenant keys are public (they are in this file): the test suite uses
    them, every other installation gets ``random_keys`` (shown once, stored as digests).
    """
    hasher = PasswordHasher()
    created: dict[str, str] = {}
    async with conn.transaction():
        for tid, name, public_key in TENANTS:
            key = random_api_key() if random_keys else public_key
            if await conn.fetchval(
                """INSERT INTO tenants (id, name, traccar_api_key_sha256) VALUES ($1, $2, $3)
                   ON CONFLICT (id) DO NOTHING RETURNING id""",
                tid,
                name,
                api_key_digest(key),
            ):
                created[tid] = key
        await conn.executemany(
            """INSERT INTO drivers (id, tenant_id, name, device_unique_id, vehicle_type,
                                    vehicle_plate)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING""",
            DRIVERS,
        )
        await conn.executemany(
            """INSERT INTO customers (id, tenant_id, name, lat, lng, geofence_radius_m,
                                      customer_type)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING""",
            CUSTOMERS,
        )
        # A customer's circle becomes a polygon buffered on the spheroid (metres, not degrees).
        await conn.execute(
            """INSERT INTO geofences (tenant_id, customer_id, name, kind, center, radius_m, geom)
               SELECT c.tenant_id, c.id, c.name, 'circle',
                      ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326), c.geofence_radius_m,
                      ST_Buffer(ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326)::geography,
                                c.geofence_radius_m, 'quad_segs=16')::geometry
               FROM customers c
               ON CONFLICT (customer_id) DO NOTHING"""
        )
        existing = {
            (r["tenant_id"], r["email"])
            for r in await conn.fetch("SELECT tenant_id, email FROM users")
        }
        for tenant_id, email, password, name, role in USERS:
            if (tenant_id, email) in existing:
                continue
            await conn.execute(
                """INSERT INTO users (tenant_id, email, password_hash, name, role)
                   VALUES ($1, $2, $3, $4, $5)""",
                tenant_id,
                email,
                hasher.hash(password),
                name,
                role,
            )
    return created
