"""``Annotated`` aliases for route signatures: state, connection, caller, tenant, roles.

Every bearer-protected route depends on ``get_principal``; routes limited to some roles
depend on a ``RoleGuard`` (``require_roles``), whose ``roles`` the route matrix test reads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from analytics import queries
from api.errors import Forbidden, NotFound, Unauthorized
from api.security import InvalidToken, Principal, Role, verify_access_token
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


_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="The accessToken from POST /api/auth/login or /api/auth/refresh.",
)


def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token")
    try:
        return verify_access_token(credentials.credentials, state.settings.auth)
    except InvalidToken as exc:
        raise Unauthorized("invalid or expired token") from exc


UserDep = Annotated[Principal, Depends(get_principal)]


class RoleGuard:
    """A dependency admitting only callers whose role is in ``roles`` (else 403)."""

    def __init__(self, *roles: Role) -> None:
        self.roles: frozenset[str] = frozenset(roles)

    def __call__(self, user: UserDep) -> Principal:
        if user.role not in self.roles:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(self.roles))}")
        return user

    def __repr__(self) -> str:
        return f"RoleGuard({', '.join(sorted(self.roles))})"


def require_roles(*roles: Role) -> RoleGuard:
    """Return the dependency admitting only these roles."""
    return RoleGuard(*roles)


admin_only = require_roles("admin")
staff_only = require_roles("admin", "dispatcher")
any_role = require_roles("admin", "dispatcher", "driver")

AdminDep = Annotated[Principal, Depends(admin_only)]


def operator_only(user: AdminDep, state: StateDep) -> Principal:
    """An admin of an operator tenant (process-wide data spans every tenant), else 403."""
    if user.tenant_id not in state.settings.auth.operator_tenant_set():
        raise Forbidden("this needs a platform operator: an admin of an operator tenant")
    return user


# Admins of the operator tenants (FLEETPULSE_AUTH__OPERATOR_TENANTS): process-wide data.
OperatorDep = Annotated[Principal, Depends(operator_only)]
# Admins and dispatchers: everything about drivers, routes, visits, customers in the tenant.
StaffDep = Annotated[Principal, Depends(staff_only)]
# Any role; routes using it restrict drivers to their own objects themselves.
MemberDep = Annotated[Principal, Depends(any_role)]


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """Return value as a UUID; a malformed id is simply not found (404), like a foreign one."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"{what} not found") from exc


def check_driver_scope(user: Principal, driver_id: uuid.UUID | str, what: str) -> None:
    """A driver-role caller sees only their own driver's objects; others answer 404."""
    if user.role == "driver" and str(user.driver_id) != str(driver_id):
        raise NotFound(f"{what} not found")


async def driver_in_scope(conn: Conn, user: Principal, driver_id: str) -> uuid.UUID:
    """Return the driver's id when the caller may read it; 404 otherwise (also for another
    tenant's driver, and for a driver-role caller asking about someone else)."""
    try:
        did = uuid.UUID(driver_id)
    except ValueError as exc:
        raise NotFound("driver not found") from exc
    if await queries.driver_tenant(conn, did) != user.tenant_id:
        raise NotFound("driver not found")
    if user.role == "driver" and str(user.driver_id) != str(did):
        raise NotFound("driver not found")
    return did


def fleet_reader(user: Principal) -> str:
    """Return the caller's tenant when it may read fleet-wide analytics (not drivers)."""
    if user.role == "driver":
        raise Forbidden("fleet analytics need the admin or dispatcher role")
    return user.tenant_id
