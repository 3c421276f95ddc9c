"""Login: email + password + tenant -> a short-lived access token (refresh: see issue #3)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.dependencies import ConnDep, StateDep, UserDep
from api.errors import Unauthorized
from api.security import Principal, issue_access_token, verify_password

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    tenantId: str = Field(min_length=1, max_length=128)


@router.post("/login")
async def login(body: LoginBody, conn: ConnDep, state: StateDep) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT id::text, tenant_id, email, password_hash, name, role, driver_id::text, active
           FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)""",
        body.tenantId,
        body.email,
    )
    ok = await asyncio.to_thread(
        verify_password, row["password_hash"] if row else None, body.password
    )
    if row is None or not ok or not row["active"]:
        raise Unauthorized("invalid email, password or tenant")
    principal = Principal(
        user_id=row["id"],
        tenant_id=row["tenant_id"],
        role=row["role"],
        email=row["email"],
        driver_id=row["driver_id"],
    )
    return {
        "accessToken": issue_access_token(principal, state.settings.auth),
        "expiresIn": state.settings.auth.access_ttl_s,
        "tokenType": "Bearer",
        "user": {
            "id": row["id"],
            "email": row["email"],
            "name": row["name"],
            "role": row["role"],
            "tenantId": row["tenant_id"],
            "driverId": row["driver_id"],
        },
    }


@router.get("/profile")
async def profile(user: UserDep) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "email": user.email,
        "role": user.role,
        "tenantId": user.tenant_id,
        "driverId": user.driver_id,
    }
