"""Auth: login, refresh (rotating opaque tokens with reuse detection), logout, register, profile.

Refresh tokens are 256 random bits, stored as sha256 only. Each use marks the token spent
and issues the next one of the same family; presenting a spent (or revoked) token again is
taken as theft and revokes the whole family, so both the thief and the victim must log in.
Failed logins are counted in Redis per account and per client address; beyond the limit the
login answers 429 with Retry-After until the window ends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.dependencies import AdminDep, ConnDep, StateDep, UserDep
from api.errors import Conflict, InvalidInput, TooManyRequests, Unauthorized
from api.records import users
from api.records.drivers import check_driver
from api.records.users import Row, user_json
from api.security import (
    Principal,
    hash_password,
    issue_access_token,
    new_refresh_token,
    refresh_token_digest,
    verify_password,
)
from api.state import AppState
from infrastructure.postgres import Conn

router = APIRouter(prefix="/api/auth", tags=["auth"])

_USER_EXAMPLE = {
    "id": "7f9c2b1e-5a43-4d61-9a0e-3c2f1b8d6e54",
    "email": "admin@tenant1.com",
    "name": "Admin Tenant 1",
    "role": "admin",
    "tenantId": "tenant-1",
    "driverId": None,
}
_REFRESH_EXAMPLE = "Q2h4c0xQd2V0b2tlbi1leGFtcGxlLW9ubHktMzJieXRlcw"
_TOKENS_EXAMPLE = {
    "accessToken": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
    "refreshToken": _REFRESH_EXAMPLE,
    "expiresIn": 900,
    "tokenType": "Bearer",
    "user": _USER_EXAMPLE,
}


class LoginBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "admin@tenant1.com", "password": "admin123", "tenantId": "tenant-1"}
            ]
        },
    )

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    tenantId: str = Field(min_length=1, max_length=128)


class RefreshBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refreshToken": _REFRESH_EXAMPLE}]},
    )

    refreshToken: str = Field(min_length=1, max_length=256)


class LogoutBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refreshToken": _REFRESH_EXAMPLE}, {}]},
    )

    refreshToken: str | None = Field(
        default=None,
        max_length=256,
        description="Revoke this session only; without it every session of the caller.",
    )


class RegisterBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "dispatch@tenant1.com",
                    "password": "a-long-passphrase",
                    "name": "Dana Dispatcher",
                    "role": "dispatcher",
                },
                {
                    "email": "john@tenant1.com",
                    "password": "a-long-passphrase",
                    "name": "John Smith",
                    "role": "driver",
                    "driverId": "a1b2c3d4-0001-4000-8000-000000000001",
                },
            ]
        },
    )

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field(default="", max_length=200)
    role: Literal["admin", "dispatcher", "driver"]
    driverId: uuid.UUID | None = Field(
        default=None, description="Required for role driver: the driver this user is."
    )


def _principal(row: Row) -> Principal:
    return Principal(
        user_id=str(row["id"]),
        tenant_id=row["tenant_id"],
        role=row["role"],
        email=row["email"],
        driver_id=str(row["driver_id"]) if row["driver_id"] else None,
    )


async def _store_refresh_token(
    conn: Conn, state: AppState, user_id: uuid.UUID, family_id: uuid.UUID
) -> str:
    token = new_refresh_token()
    expires_at = datetime.now(UTC) + timedelta(seconds=state.settings.auth.refresh_ttl_s)
    await users.store_refresh_token(
        conn, user_id, family_id, refresh_token_digest(token), expires_at
    )
    return token


def _tokens(state: AppState, row: Row, refresh: str) -> dict[str, Any]:
    return {
        "accessToken": issue_access_token(_principal(row), state.settings.auth),
        "refreshToken": refresh,
        "expiresIn": state.settings.auth.access_ttl_s,
        "tokenType": "Bearer",
        "user": user_json(row),
    }


def _limit_keys(state: AppState, body: LoginBody, email: str, address: str) -> tuple[str, str]:
    """The failure counters: ``email`` as the database lowers it (the lookup's own rule)."""
    p = state.keys.prefix
    return (
        f"{p}auth:login_failures:account:{body.tenantId}:{email}",
        f"{p}auth:login_failures:address:{address}",
    )


async def _refuse_if_limited(state: AppState, keys: tuple[str, str]) -> None:
    auth = state.settings.auth
    async with state.redis.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.get(k)
            pipe.ttl(k)
        acct, acct_ttl, addr, addr_ttl = await pipe.execute()
    for count, ttl, limit in (
        (acct, acct_ttl, auth.login_max_failures_per_account),
        (addr, addr_ttl, auth.login_max_failures_per_address),
    ):
        if count is not None and int(count) >= limit:
            wait = int(ttl) if int(ttl) > 0 else auth.login_window_s
            raise TooManyRequests(f"too many failed logins; retry in {wait} s", retry_after_s=wait)


async def _count_failure(state: AppState, keys: tuple[str, str]) -> None:
    async with state.redis.pipeline(transaction=True) as pipe:
        for k in keys:
            pipe.incr(k)
            pipe.expire(k, state.settings.auth.login_window_s, nx=True)
        await pipe.execute()


@router.post(
    "/login",
    summary="Log in: email, password, tenant → access and refresh tokens",
    responses={
        200: {"content": {"application/json": {"example": _TOKENS_EXAMPLE}}},
        401: {"description": "wrong email, password or tenant, or the user is disabled"},
        429: {"description": "too many failed logins for this account or address"},
    },
)
async def login(
    body: LoginBody, conn: ConnDep, state: StateDep, request: Request
) -> dict[str, Any]:
    address = request.client.host if request.client else "unknown"
    # Python's lower() and PostgreSQL's differ (Turkish dotted İ): a counter keyed by one
    # while the lookup used the other gave each spelling of an account its own counter
    email = await users.lower_email(conn, body.email)
    keys = _limit_keys(state, body, email, address)
    await _refuse_if_limited(state, keys)
    row = await users.login_user(conn, body.tenantId, email)
    ok = await asyncio.to_thread(
        verify_password, row["password_hash"] if row else None, body.password
    )
    if row is None or not ok or not row["active"]:
        await _count_failure(state, keys)
        raise Unauthorized("invalid email, password or tenant")
    await state.redis.delete(keys[0])
    refresh = await _store_refresh_token(conn, state, row["id"], uuid.uuid4())
    return _tokens(state, row, refresh)


@router.post(
    "/refresh",
    summary="Exchange a refresh token for new tokens (the old one is spent)",
    responses={
        200: {"content": {"application/json": {"example": _TOKENS_EXAMPLE}}},
        401: {"description": "unknown, expired, spent (family revoked) or disabled user"},
    },
)
async def refresh(body: RefreshBody, conn: ConnDep, state: StateDep) -> dict[str, Any]:
    digest = refresh_token_digest(body.refreshToken)
    problem: str | None = None
    result: dict[str, Any] | None = None
    async with conn.transaction():
        rt = await users.lock_refresh_token(conn, digest)
        if rt is None:
            raise Unauthorized("invalid refresh token")
        revoke_family = False
        if rt["used_at"] is not None or rt["revoked_at"] is not None:
            problem, revoke_family = "refresh token already used; the session is revoked", True
        elif rt["expires_at"] <= datetime.now(UTC):
            problem = "refresh token expired"
        elif not rt["active"]:
            problem, revoke_family = "user is disabled", True
        if revoke_family:
            await users.revoke_family(conn, rt["family_id"])
        if problem is None:
            await users.mark_refresh_token_used(conn, rt["id"])
            token = await _store_refresh_token(conn, state, rt["user_id"], rt["family_id"])
            user = dict(rt)
            user["id"] = rt["user_id"]
            result = _tokens(state, user, token)
    if problem is not None or result is None:  # after commit: the revocation is kept
        raise Unauthorized(problem or "invalid refresh token")
    return result


@router.post(
    "/logout",
    status_code=204,
    summary="Revoke a session (the given refresh token's family) or all of the caller's",
    responses={204: {"description": "revoked (also when there was nothing to revoke)"}},
)
async def logout(
    user: UserDep,
    conn: ConnDep,
    state: StateDep,
    body: Annotated[
        LogoutBody | None, Body(examples=[{"refreshToken": _REFRESH_EXAMPLE}, {}])
    ] = None,
) -> Response:
    uid = uuid.UUID(user.user_id)
    if body is not None and body.refreshToken:
        await users.revoke_session(conn, uid, refresh_token_digest(body.refreshToken))
    else:
        await users.revoke_all_sessions(conn, uid)
    # live sockets opened with this user's tokens close at the gateway's next session check
    await state.redis.set(
        state.keys.logged_out(user.user_id), time.time(), ex=state.settings.auth.access_ttl_s
    )
    return Response(status_code=204)


@router.post(
    "/register",
    status_code=201,
    summary="Create a user in the caller's tenant (admin)",
    responses={
        201: {"content": {"application/json": {"example": _USER_EXAMPLE}}},
        404: {"description": "driverId is not a driver of the tenant"},
        409: {"description": "a user with this email exists in the tenant"},
        422: {"description": "invalid body, or role driver without driverId"},
    },
)
async def register(body: RegisterBody, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    if body.role == "driver" and body.driverId is None:
        raise InvalidInput("a user with role driver needs driverId")
    if body.role != "driver" and body.driverId is not None:
        raise InvalidInput("driverId is only for users with role driver")
    if body.driverId is not None:
        await check_driver(conn, admin.tenant_id, body.driverId)
    pw_hash = await asyncio.to_thread(hash_password, body.password)
    row = await users.create_user(
        conn,
        admin.tenant_id,
        email=body.email,
        password_hash=pw_hash,
        name=body.name,
        role=body.role,
        driver_id=body.driverId,
    )
    if row is None:
        raise Conflict("a user with this email exists in the tenant")
    return user_json(row)


@router.get(
    "/profile",
    summary="The caller",
    responses={200: {"content": {"application/json": {"example": _USER_EXAMPLE}}}},
)
async def profile(user: UserDep, conn: ConnDep) -> dict[str, Any]:
    row = await users.active_user(conn, user.tenant_id, uuid.UUID(user.user_id))
    if row is None:
        raise Unauthorized("user no longer exists or is disabled")
    return user_json(row)
