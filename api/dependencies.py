"""``Annotated`` aliases for route signatures: state, connection, caller, tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request

from api.errors import Unauthorized
from api.security import InvalidToken, Principal, verify_access_token
from api.state import AppState
from infrastructure.postgres import Conn


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.fleetpulse
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_conn(state: StateDep) -> AsyncIterator[Conn]:
    async with state.pool.acquire() as conn:
        yield conn


ConnDep = Annotated[Conn, Depends(get_conn)]


def get_principal(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    try:
        return verify_access_token(authorization[7:].strip(), state.settings.auth)
    except InvalidToken as exc:
        raise Unauthorized("invalid or expired token") from exc


UserDep = Annotated[Principal, Depends(get_principal)]


def get_tenant(user: UserDep) -> str:
    return user.tenant_id


TenantDep = Annotated[str, Depends(get_tenant)]
