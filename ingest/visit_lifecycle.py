"""The planned-visit lifecycle, in one place for the API and the enrichment worker.

- the rules: which status may follow which (``ALLOWED``), and the statuses the automatic
  detector reads and moves (``pending → arrived → departed``, and back to ``arrived``);
- ``apply_change(conn, change, *, source)``: move one visit under a row lock if it is still
  in an expected status, and return its ``visits.events`` event (None when it had moved on);
- the outbox: ``add_to_outbox`` writes events in the caller's transaction (the event exists
  iff the change does), ``publish_outbox`` sends them after the commit and then deletes them;
  whatever a crash leaves behind the workers publish later (``Enricher.flush_stale_outbox``).

Event ids are deterministic (UUIDv5 of visit, status and time), so consumers can drop the
duplicates at-least-once delivery may bring.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from geo.timestamps import iso_ms
from infrastructure.metrics import GEOFENCE_EVENTS, VISIT_TRANSITIONS
from infrastructure.postgres import Conn

VisitStatus = Literal[
    "pending",
    "arrived",
    "in_progress",
    "departed",
    "completed",
    "skipped",
    "failed",
    "cancelled",
]

# Finishing statuses: they stamp completed_at ("completed" may still be followed by "departed").
TERMINAL: frozenset[str] = frozenset({"completed", "skipped", "failed", "cancelled"})

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"arrived", "in_progress", "skipped", "failed", "cancelled"}),
    "arrived": frozenset({"in_progress", "departed", "completed", "skipped", "failed"}),
    "in_progress": frozenset({"departed", "completed", "failed"}),
    # Left the geofence: can still be confirmed done (or not) afterwards, or come back.
    "departed": frozenset({"arrived", "completed", "failed", "skipped"}),
    # The seed's flow ends pending → arrived → in_progress → completed → departed: a seed
    # client reports leaving after finishing. The visit stays counted as completed (0019).
    "completed": frozenset({"departed"}),
    "skipped": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

# What the automatic detector reads: a stop being served, a stop not yet left or closed (the
# next one to drive to, or being served), and the statuses it moves a visit from.
AT_STOP: tuple[str, ...] = ("arrived", "in_progress")
OPEN: tuple[str, ...] = ("pending", *AT_STOP)
# statuses that say the driver was at the stop (the next stop is looked for after the one
# reached last: ingest.movement._next_open)
REACHED: frozenset[str] = frozenset({*AT_STOP, "departed", "completed", "failed"})
ARRIVE_FROM: tuple[str, ...] = ("pending", "departed")
DEPART_FROM: tuple[str, ...] = AT_STOP
Source = Literal["auto", "api"]

EVENT_NAMESPACE = uuid.UUID("5b8c1d3e-2f4a-4e6b-9c7d-0a1b2c3d4e5f")
OutboxRow = tuple[str, str, str, bytes]  # event id, topic, key, JSON value


def allowed_next(status: str) -> frozenset[str]:
    """Return the statuses that may follow status (empty for terminal or unknown ones)."""
    return ALLOWED.get(status, frozenset())


class TransitionNotAllowed(ValueError):
    """A status change the rules do not allow from the visit's current status."""

    def __init__(self, current: str, requested: str) -> None:
        super().__init__(f"a visit cannot go from {current} to {requested}")
        self.current = current
        self.requested = requested
        self.allowed = allowed_next(current)


@dataclass(frozen=True, slots=True)
class VisitChange:
    """One visit moving to ``to_status`` if it is still in one of ``from_statuses``."""

    visit_id: str
    route_id: str
    driver_id: str
    tenant_id: str
    customer_id: int
    customer_name: str | None
    from_statuses: tuple[str, ...]
    to_status: str
    at_ms: int
    notes: str | None = None  # a person's note (the API)


def check_transition(current: str, requested: str) -> None:
    """Raise TransitionNotAllowed unless requested may follow current."""
    if requested not in allowed_next(current):
        raise TransitionNotAllowed(current, requested)


async def apply_change(conn: Conn, change: VisitChange, *, source: Source) -> dict[str, Any] | None:
    """Move a visit if it is still in an expected status; return its event, None if not.

    ``auto`` (the worker's geofence detector) stamps ``arrived_at``/``departed_at`` with the
    fix time and starts a planned route on the first arrival; ``api`` (a person) stamps the
    server's time, keeps the first arrival time, closes terminal visits and keeps notes.
    The caller owns the transaction, and writes the event with ``add_to_outbox`` in it.
    """
    at = datetime.fromtimestamp(change.at_ms / 1000, tz=UTC)
    vid = uuid.UUID(change.visit_id)
    if source == "api":
        previous = await conn.fetchval(
            """UPDATE planned_visits v SET status = $2, updated_at = now(),
                   arrived_at = CASE WHEN $2 IN ('arrived', 'in_progress')
                                     THEN COALESCE(v.arrived_at, now()) ELSE v.arrived_at END,
                   departed_at = CASE WHEN $2 = 'departed' THEN now() ELSE v.departed_at END,
                   completed_at = CASE WHEN $3 THEN now() ELSE v.completed_at END,
                   notes = COALESCE($4, v.notes)
               FROM (SELECT id, status FROM planned_visits WHERE id = $1 FOR UPDATE) old
               WHERE v.id = old.id AND old.status = ANY($5::text[])
               RETURNING old.status""",
            vid,
            change.to_status,
            change.to_status in TERMINAL,
            change.notes,
            list(change.from_statuses),
        )
    else:
        column = "arrived_at" if change.to_status == "arrived" else "departed_at"
        previous = await conn.fetchval(
            f"""UPDATE planned_visits v SET status = $2, {column} = $3, updated_at = now()
                FROM (SELECT id, status FROM planned_visits WHERE id = $1 FOR UPDATE) old
                WHERE v.id = old.id AND old.status = ANY($4::text[])
                RETURNING old.status""",
            vid,
            change.to_status,
            at,
            list(change.from_statuses),
        )
        if previous is not None and change.to_status == "arrived":
            await conn.execute(
                """UPDATE routes SET status = 'in_progress',
                       started_at = coalesce(started_at, $2), updated_at = now()
                   WHERE id = $1 AND status = 'planned'""",
                uuid.UUID(change.route_id),
                at,
            )
    if previous is None:
        return None
    return visit_event(change, previous_status=previous, source=source)


def visit_event(change: VisitChange, *, previous_status: str, source: str) -> dict[str, Any]:
    """The JSON of one visit transition."""
    return {
        "schema": 1,
        "id": str(
            uuid.uuid5(
                EVENT_NAMESPACE, f"visit:{change.visit_id}:{change.to_status}:{change.at_ms}"
            )
        ),
        "type": f"visit.{change.to_status}",
        "tenantId": change.tenant_id,
        "routeId": change.route_id,
        "visitId": change.visit_id,
        "driverId": change.driver_id,
        "customerId": change.customer_id,
        "customerName": change.customer_name,
        "status": change.to_status,
        "previousStatus": previous_status,
        "at": iso_ms(change.at_ms),
        "atMs": change.at_ms,
        "source": source,
    }


def outbox_row(topic: str, key: str, event: dict[str, Any]) -> OutboxRow:
    """Return an event as an outbox row (its id, the physical topic, key, JSON)."""
    return (event["id"], topic, key, orjson.dumps(event))


async def add_to_outbox(conn: Conn, rows: Sequence[OutboxRow]) -> None:
    """Insert events into the outbox (in the caller's transaction; duplicates ignored)."""
    if rows:
        await conn.executemany(
            """INSERT INTO event_outbox (id, topic, key, value)
               VALUES ($1::uuid, $2, $3, $4::jsonb) ON CONFLICT (id) DO NOTHING""",
            [(i, t, k, orjson.loads(v)) for i, t, k, v in rows],
        )


Send = Callable[[str, list[tuple[bytes, bytes]]], Awaitable[None]]


async def publish_outbox(conn: Conn, rows: Sequence[OutboxRow], send: Send) -> None:
    """Send committed outbox rows (per topic, keyed), then delete them from the outbox.

    ``send(topic, records)`` returns once the broker acknowledged every record, or raises;
    then the rows stay in the outbox for a later flush.
    """
    if not rows:
        return
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for _, topic, key, value in rows:
        by_topic.setdefault(topic, []).append((key.encode(), value))
    for topic, records in by_topic.items():
        await send(topic, records)
    await conn.execute("DELETE FROM event_outbox WHERE id = ANY($1::uuid[])", [i for i, *_ in rows])
    count_published(rows)


# Every label value known up front: a series at 0 rather than none until the first event.
for _status in ALLOWED:
    VISIT_TRANSITIONS.labels(_status)
for _kind in ("enter", "exit"):
    GEOFENCE_EVENTS.labels(_kind)


def count_published(rows: Sequence[OutboxRow]) -> None:
    """Count published geofence events and visit transitions for /metrics (worker and API)."""
    for _, _, _, value in rows:
        event = orjson.loads(value)
        kind = event.get("type", "")
        if kind in ("geofenceEnter", "geofenceExit"):
            GEOFENCE_EVENTS.labels("enter" if kind == "geofenceEnter" else "exit").inc()
        elif kind.startswith("visit.") and event.get("status") in ALLOWED:
            VISIT_TRANSITIONS.labels(event["status"]).inc()
