"""Visit lifecycle events (``visits.events``, key = route id), one builder for worker and API.

Events are written to ``event_outbox`` in the same transaction as the visit change and
published after the commit; whatever a crash leaves in the outbox is published later by the
workers (``Enricher.flush_stale_outbox``). Ids are deterministic (UUIDv5 of visit, status and
time), so consumers can drop the duplicates at-least-once delivery may bring.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from infrastructure.postgres import Conn
from ingest.validation import iso_ms

EVENT_NAMESPACE = uuid.UUID("5b8c1d3e-2f4a-4e6b-9c7d-0a1b2c3d4e5f")


def visit_event(
    *,
    tenant_id: str,
    route_id: str,
    visit_id: str,
    driver_id: str,
    customer_id: int,
    customer_name: str | None,
    status: str,
    previous_status: str,
    at_ms: int,
    source: str,
) -> dict[str, Any]:
    """The JSON of one visit transition."""
    return {
        "schema": 1,
        "id": str(uuid.uuid5(EVENT_NAMESPACE, f"visit:{visit_id}:{status}:{at_ms}")),
        "type": f"visit.{status}",
        "tenantId": tenant_id,
        "routeId": route_id,
        "visitId": visit_id,
        "driverId": driver_id,
        "customerId": customer_id,
        "customerName": customer_name,
        "status": status,
        "previousStatus": previous_status,
        "at": iso_ms(at_ms),
        "atMs": at_ms,
        "source": source,
    }


async def add_to_outbox(
    conn: Conn, topic_name: str, events: list[dict[str, Any]], *, key_field: str = "routeId"
) -> list[tuple[str, str, str, bytes]]:
    """Insert events into the outbox (caller's transaction); return them ready to publish."""
    rows = [(e["id"], topic_name, str(e[key_field]), orjson.dumps(e)) for e in events]
    if rows:
        await conn.executemany(
            """INSERT INTO event_outbox (id, topic, key, value)
               VALUES ($1::uuid, $2, $3, $4::jsonb) ON CONFLICT (id) DO NOTHING""",
            [(i, t, k, orjson.loads(v)) for i, t, k, v in rows],
        )
    return rows
