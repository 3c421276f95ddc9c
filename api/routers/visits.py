"""Planned visits: create, get, by route, by driver, status changes.

Status changes follow ``ingest.visit_lifecycle`` (the rules and ``apply_change`` the
enrichment worker uses for the automatic arrived/departed): an illegal change is 409 with the
allowed next states and changes nothing. The check and the write happen under a row lock, so
a concurrent automatic transition cannot slip in between. The route's stop counters and
``visit_completions`` are kept by database triggers (migration 0007), whoever changes a
visit. Each change writes a ``visits.events`` event to the outbox in the same transaction,
with the outbox write and publish step the worker uses too; it is published after the
commit, or later by the workers when Kafka is down then.
"""

from __future__ import annotations

import logging
import time as clock
import uuid
from datetime import date, time
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.dependencies import (
    ConnDep,
    MemberDep,
    StaffDep,
    StateDep,
    check_driver_scope,
    parse_uuid,
)
from api.errors import Conflict, InvalidInput
from api.pagination import Int4, PageDep, paginated_responses
from api.params import DayQuery, SaneDate, ScheduleFilter
from api.records import visits as records
from api.records.customers import customer_name
from api.records.drivers import JOHN, check_driver
from api.records.routes import derive_route_path, fetch_route
from api.records.visits import customer_geofence, fetch_visit, insert_visit, visit_json
from infrastructure.kafka import VISITS_EVENTS
from ingest.errors import BrokerUnavailable
from ingest.visit_lifecycle import (
    VisitChange,
    VisitStatus,
    add_to_outbox,
    allowed_next,
    apply_change,
    check_transition,
    outbox_row,
    publish_outbox,
)

router = APIRouter(prefix="/api/visits", tags=["visits"])
log = logging.getLogger(__name__)

VISIT_STATUSES: tuple[str, ...] = get_args(VisitStatus)
VISIT_EXAMPLE: dict[str, Any] = {
    "id": "c3a1d9f0-7b5e-4c8a-8f0e-2d4b6a8c0e12",
    "tenantId": "tenant-1",
    "routeId": "5b0c8a8e-2f1d-4a8e-9c39-0d7f6f1f2a11",
    "driverId": JOHN,
    "customerId": 1,
    "sequenceNumber": 1,
    "visitType": "delivery",
    "scheduledDate": "2026-02-07",
    "timeWindowStart": "08:00",
    "timeWindowEnd": "12:00",
    "status": "pending",
    "allowedNext": ["arrived", "cancelled", "failed", "in_progress", "skipped"],
    "arrivedAt": None,
    "departedAt": None,
    "completedAt": None,
    "notes": None,
    "geofenceId": 1,
    "etaAt": None,
    "createdAt": "2026-02-06T17:00:00+00:00",
    "updatedAt": "2026-02-06T17:00:00+00:00",
}


class VisitCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "routeId": "5b0c8a8e-2f1d-4a8e-9c39-0d7f6f1f2a11",
                    "driverId": JOHN,
                    "customerId": 1,
                    "sequenceNumber": 1,
                    "visitType": "delivery",
                    "scheduledDate": "2026-02-07",
                    "timeWindowStart": "08:00",
                    "timeWindowEnd": "12:00",
                }
            ]
        },
    )

    routeId: uuid.UUID
    customerId: int = Field(ge=1, le=2**63 - 1)
    sequenceNumber: int = Field(ge=1, le=100_000)
    visitType: str = Field(default="delivery", pattern=r"^[a-z_]{1,32}$")
    driverId: uuid.UUID | None = Field(
        default=None, description="Must be the route's driver when given."
    )
    scheduledDate: SaneDate | None = Field(default=None, description="Default: the route's date.")
    timeWindowStart: time | None = None
    timeWindowEnd: time | None = None
    notes: str | None = Field(default=None, max_length=2_000)
    tenantId: str | None = Field(
        default=None, description="Ignored unless it differs from the caller's (then 422)."
    )


class VisitStatusUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "in_progress"}, {"status": "completed", "notes": "signed"}]
        },
    )

    status: VisitStatus
    notes: str | None = Field(default=None, max_length=2_000)


@router.post(
    "",
    status_code=201,
    summary="Create a planned visit on a route of the tenant",
    responses={
        201: {"content": {"application/json": {"example": VISIT_EXAMPLE}}},
        404: {"description": "the route or customer is not the tenant's"},
        409: {"description": "the sequence number is taken, or the route is finished"},
        422: {"description": "invalid body (e.g. driverId is not the route's driver)"},
    },
)
async def create_visit(body: VisitCreate, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    if body.tenantId is not None and body.tenantId != user.tenant_id:
        raise InvalidInput("tenantId comes from your token; it cannot name another tenant")
    if body.timeWindowStart and body.timeWindowEnd and body.timeWindowEnd < body.timeWindowStart:
        raise InvalidInput("timeWindowEnd is before timeWindowStart")
    async with conn.transaction():
        route = await fetch_route(conn, user.tenant_id, body.routeId, for_update=True)
        if body.driverId is not None and body.driverId != route["driver_id"]:
            raise InvalidInput("driverId must be the route's driver")
        if route["status"] in ("completed", "cancelled"):
            raise Conflict(f"the route is {route['status']}; no visits can be added")
        geofence_id = await customer_geofence(conn, user.tenant_id, body.customerId)
        vid = await insert_visit(
            conn,
            user.tenant_id,
            route,
            {
                "customer_id": body.customerId,
                "sequence_number": body.sequenceNumber,
                "visit_type": body.visitType,
                "scheduled_date": body.scheduledDate,
                "time_window_start": body.timeWindowStart,
                "time_window_end": body.timeWindowEnd,
                "notes": body.notes,
                "geofence_id": geofence_id,
            },
        )
        await derive_route_path(conn, route["id"])
        return visit_json(await fetch_visit(conn, user.tenant_id, vid))


@router.get(
    "/route/{route_id}",
    summary="A route's visits in sequence order (paginated)",
    responses=paginated_responses([VISIT_EXAMPLE]),
)
async def visits_by_route(
    route_id: str, user: MemberDep, conn: ConnDep, page: PageDep
) -> list[dict[str, Any]]:
    rid = parse_uuid(route_id, "route")
    route = await fetch_route(conn, user.tenant_id, rid)
    check_driver_scope(user, route["driver_id"], "route")
    after = page.after([Int4])  # sequence_number
    rows = await records.visits_by_route(
        conn, user.tenant_id, rid, after=after[0] if after else None, limit=page.fetch
    )
    return [visit_json(r) for r in page.of(rows, lambda r: [r["sequence_number"]])]


def visit_filter(
    date_: DayQuery = None,
    status: Annotated[VisitStatus | None, Query(examples=["pending"])] = None,
) -> ScheduleFilter:
    """``?date=&status=`` of a driver's visit list."""
    return ScheduleFilter(date_, status)


@router.get(
    "/driver/{driver_id}",
    summary="A driver's visits by scheduled date and sequence (paginated)",
    responses=paginated_responses([VISIT_EXAMPLE]),
)
async def visits_by_driver(
    driver_id: str,
    user: MemberDep,
    conn: ConnDep,
    page: PageDep,
    where: Annotated[ScheduleFilter, Depends(visit_filter)],
) -> list[dict[str, Any]]:
    did = parse_uuid(driver_id, "driver")
    check_driver_scope(user, did, "driver")
    await check_driver(conn, user.tenant_id, did)
    rows = await records.visits_by_driver(
        conn,
        user.tenant_id,
        did,
        day=where.day,
        status=where.status,
        after=page.after([date, Int4, uuid.UUID]),
        limit=page.fetch,
    )
    shown = page.of(rows, lambda r: [r["scheduled_date"], r["sequence_number"], r["id"]])
    return [visit_json(r) for r in shown]


@router.get(
    "/{visit_id}",
    summary="A visit (a driver: only their own)",
    responses={200: {"content": {"application/json": {"example": VISIT_EXAMPLE}}}},
)
async def get_visit(visit_id: str, user: MemberDep, conn: ConnDep) -> dict[str, Any]:
    row = await fetch_visit(conn, user.tenant_id, parse_uuid(visit_id, "visit"))
    check_driver_scope(user, row["driver_id"], "visit")
    return visit_json(row)


@router.patch(
    "/{visit_id}/status",
    summary="Change a visit's status (allowed transitions only)",
    description="Allowed: "
    + "; ".join(
        f"{s} → {', '.join(sorted(allowed_next(s))) or '(terminal)'}" for s in VISIT_STATUSES
    ),
    responses={
        200: {"content": {"application/json": {"example": VISIT_EXAMPLE | {"status": "arrived"}}}},
        409: {
            "description": "not allowed from the current status",
            "content": {
                "application/json": {
                    "example": {
                        "error": "conflict",
                        "message": "a visit cannot go from completed to arrived",
                        "details": {
                            "current": "completed",
                            "requested": "arrived",
                            "allowedNext": [],
                        },
                    }
                }
            },
        },
    },
)
async def update_visit_status(
    visit_id: str, body: VisitStatusUpdate, user: MemberDep, conn: ConnDep, state: StateDep
) -> dict[str, Any]:
    vid = parse_uuid(visit_id, "visit")
    topic = state.settings.kafka.topic(VISITS_EVENTS)
    async with conn.transaction():
        row = await fetch_visit(conn, user.tenant_id, vid, for_update=True)
        check_driver_scope(user, row["driver_id"], "visit")
        check_transition(row["status"], body.status)
        change = VisitChange(
            visit_id=str(vid),
            route_id=str(row["route_id"]),
            driver_id=str(row["driver_id"]),
            tenant_id=user.tenant_id,
            customer_id=row["customer_id"],
            customer_name=await customer_name(conn, row["customer_id"]),
            from_statuses=(row["status"],),
            to_status=body.status,
            at_ms=int(clock.time() * 1000),
            notes=body.notes,
        )
        event = await apply_change(conn, change, source="api")
        # In the visit's transaction: the event exists iff the change does.
        outbox = [] if event is None else [outbox_row(topic, change.route_id, event)]
        await add_to_outbox(conn, outbox)
        result = visit_json(await fetch_visit(conn, user.tenant_id, vid))
    try:
        await publish_outbox(conn, outbox, state.publisher.publish_to)
    except BrokerUnavailable as exc:
        # The change is committed; the workers publish what is left in the outbox later.
        log.warning("visit event %s stays in the outbox: %s", change.visit_id, exc)
    return result
