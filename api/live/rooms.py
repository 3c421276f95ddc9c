"""Room names and who may join them (the server decides; the client only asks)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from api.security import Principal

NAMESPACE = "/tracking"
RoomKind = Literal["tenant", "driver", "route"]
ROOM_KINDS: tuple[RoomKind, ...] = ("tenant", "driver", "route")
# The payload key the seed's clients send with each join/leave event.
PAYLOAD_KEYS: dict[RoomKind, str] = {"tenant": "tenantId", "driver": "driverId", "route": "routeId"}


class LiveError(Exception):
    pass


class JoinRefused(LiveError, PermissionError):
    """The principal may not join this room (another tenant's, another driver's, unknown)."""


TENANT_ROOM_PREFIX = "tenant:"


def tenant_room(tenant_id: str) -> str:
    return f"{TENANT_ROOM_PREFIX}{tenant_id}"


def driver_room(driver_id: str) -> str:
    return f"driver:{driver_id}"


def route_room(route_id: str) -> str:
    return f"route:{route_id}"


def role_room(role: str) -> str:
    return f"role:{role}"


def room_name(kind: RoomKind, target: str) -> str:
    return f"{kind}:{target}"


# Admins of the operator tenants: they get cdc:lag (process-wide, every tenant's tables).
OPERATORS_ROOM = "operators"


def default_rooms(
    principal: Principal, operator_tenants: frozenset[str] = frozenset()
) -> list[str]:
    """Rooms joined on connect: staff get their tenant's room, a driver only their own room,
    an admin of an operator tenant the operators' room."""
    rooms = [role_room(principal.role)]
    if principal.role == "admin" and principal.tenant_id in operator_tenants:
        rooms.append(OPERATORS_ROOM)
    if principal.role == "driver":
        if principal.driver_id:
            rooms.append(driver_room(principal.driver_id))
    else:
        rooms.append(tenant_room(principal.tenant_id))
    return rooms


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom a driver or a route belongs to."""

    tenant_id: str
    driver_id: str | None


# (kind, id) -> the owner, or None when there is no such driver/route.
OwnerLookup = Callable[[RoomKind, str], Awaitable[Owner | None]]


def join_target(kind: RoomKind, data: object) -> str:
    """Return the id a join/leave event names (``{"driverId": ...}`` or a bare string)."""
    value = data.get(PAYLOAD_KEYS[kind]) if isinstance(data, dict) else data
    if not isinstance(value, str) or not value or len(value) > 200:
        raise JoinRefused(f"{PAYLOAD_KEYS[kind]} must be a non-empty string")
    if kind != "tenant":
        try:
            uuid.UUID(value)
        except ValueError:
            raise JoinRefused(f"{PAYLOAD_KEYS[kind]} is not a valid id") from None
    return value


async def authorize_join(
    principal: Principal, kind: RoomKind, target: str, lookup: OwnerLookup
) -> str:
    """Return the room the principal may join, or raise JoinRefused.

    A tenant room only for staff of that tenant; a driver's room for staff of the driver's
    tenant or for that driver; a route's room for staff of its tenant or its own driver.
    Unknown ids and other tenants' ids get the same answer (no existence leak).
    """
    if kind == "tenant":
        if target != principal.tenant_id:
            raise JoinRefused("not your tenant")
        if principal.role == "driver":
            raise JoinRefused("a driver may only join their own driver room")
        return tenant_room(target)
    if kind == "driver" and principal.role == "driver":
        if principal.driver_id is None or target.lower() != principal.driver_id.lower():
            raise JoinRefused("a driver may only join their own driver room")
        return driver_room(principal.driver_id)
    owner = await lookup(kind, target)
    if owner is None or owner.tenant_id != principal.tenant_id:
        raise JoinRefused(f"no such {kind} in your tenant")
    if principal.role == "driver" and owner.driver_id != principal.driver_id:
        raise JoinRefused("a driver may only join their own route")
    return room_name(kind, str(uuid.UUID(target)))
