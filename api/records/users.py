"""Users and their refresh tokens: the SQL of login, refresh, logout, register and profile.

Refresh tokens are stored as sha256 only; a token belongs to a family (one login's chain of
rotations), so a reused token can revoke its whole family.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from infrastructure.postgres import Conn

Row = Mapping[str, Any] | asyncpg.Record


def user_json(row: Row) -> dict[str, Any]:
    """Render a user (its password hash never)."""
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "tenantId": row["tenant_id"],
        "driverId": str(row["driver_id"]) if row["driver_id"] else None,
    }


async def lower_email(conn: Conn, email: str) -> str:
    """The email as PostgreSQL lowers it: the login lookup's own rule (Python's lower()
    differs, e.g. for the Turkish dotted İ)."""
    lowered: str = await conn.fetchval("SELECT lower($1::text)", email)
    return lowered


async def login_user(conn: Conn, tenant: str, lowered_email: str) -> asyncpg.Record | None:
    """The tenant's user with this (lowered) email, with password hash and active flag."""
    return await conn.fetchrow(
        """SELECT id, tenant_id, email, password_hash, name, role, driver_id, active
           FROM users WHERE tenant_id = $1 AND lower(email) = $2""",
        tenant,
        lowered_email,
    )


async def active_user(conn: Conn, tenant: str, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The tenant's user while it exists and is active."""
    return await conn.fetchrow(
        """SELECT id, tenant_id, email, name, role, driver_id FROM users
           WHERE id = $1 AND tenant_id = $2 AND active""",
        user_id,
        tenant,
    )


async def create_user(
    conn: Conn,
    tenant: str,
    *,
    email: str,
    password_hash: str,
    name: str,
    role: str,
    driver_id: uuid.UUID | None,
) -> asyncpg.Record | None:
    """Insert a user; None when the tenant has a user with this email (in any case)."""
    return await conn.fetchrow(
        """INSERT INTO users (tenant_id, email, password_hash, name, role, driver_id)
           SELECT $1, $2, $3, $4, $5, $6
           WHERE NOT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND lower(email) = lower($2))
           ON CONFLICT (tenant_id, email) DO NOTHING
           RETURNING id, tenant_id, email, name, role, driver_id""",
        tenant,
        email,
        password_hash,
        name,
        role,
        driver_id,
    )


async def store_refresh_token(
    conn: Conn, user_id: uuid.UUID, family_id: uuid.UUID, digest: str, expires_at: datetime
) -> None:
    """Store a refresh token (its digest) of a family."""
    await conn.execute(
        """INSERT INTO refresh_tokens (user_id, family_id, token_sha256, expires_at)
           VALUES ($1, $2, $3, $4)""",
        user_id,
        family_id,
        digest,
        expires_at,
    )


async def lock_refresh_token(conn: Conn, digest: str) -> asyncpg.Record | None:
    """The refresh token with this digest and its user, locked for the transaction."""
    return await conn.fetchrow(
        """SELECT rt.id, rt.family_id, rt.expires_at, rt.used_at, rt.revoked_at,
                  u.id AS user_id, u.tenant_id, u.email, u.name, u.role, u.driver_id, u.active
           FROM refresh_tokens rt JOIN users u ON u.id = rt.user_id
           WHERE rt.token_sha256 = $1
           FOR UPDATE OF rt""",
        digest,
    )


async def mark_refresh_token_used(conn: Conn, token_id: uuid.UUID) -> None:
    """Spend a refresh token (presenting it again revokes its family)."""
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", token_id)


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> None:
    """Revoke every token of a family not revoked yet."""
    await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE family_id = $1 AND revoked_at IS NULL""",
        family_id,
    )


async def revoke_session(conn: Conn, user_id: uuid.UUID, digest: str) -> None:
    """Revoke the family of the user's token with this digest (nothing if it is not theirs)."""
    await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE revoked_at IS NULL AND user_id = $1 AND family_id IN (
               SELECT family_id FROM refresh_tokens
               WHERE token_sha256 = $2 AND user_id = $1)""",
        user_id,
        digest,
    )


async def revoke_all_sessions(conn: Conn, user_id: uuid.UUID) -> None:
    """Revoke every refresh token of the user."""
    await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE user_id = $1 AND revoked_at IS NULL""",
        user_id,
    )
