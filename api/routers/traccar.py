"""The Traccar webhook: positions and events forwarded by a Traccar server.

Positions arrive in both of Traccar's forwarder types: ``forward.type=json`` (POST of
``{"position", "device"}``, or the seed's array) and the default URL type (GET of the
``forward.url`` template, see docs/receivers.md). Answers 2xx only after Kafka acknowledged
(acks=all); otherwise Traccar retries.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.dependencies import StateDep
from api.errors import InvalidJSON
from api.receiving import (
    TRACCAR,
    TRACCAR_EVENTS,
    ApiKey,
    authenticate_api_key,
    check_query_size,
)
from infrastructure.kafka import GPS_EVENTS
from ingest.errors import InvalidPosition, UnknownDevice
from ingest.traccar import TraccarDevice, parse_positions_body, parse_url_params
from ingest.validation import parse_iso_time

router = APIRouter(prefix="/api/traccar", tags=["traccar"])


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"body is not valid JSON: {exc}") from exc


@router.post("/positions")
async def receive_positions(request: Request, state: StateDep, x_api_key: ApiKey = None) -> Any:
    """Accept Traccar's JSON forwarding body, or the seed's array of positions."""
    with TRACCAR.counting():
        tenant = await authenticate_api_key(state, x_api_key)
        fixes = parse_positions_body(await read_json(request))
        limit = state.settings.ingest.max_batch_positions
        if len(fixes) > limit:
            raise InvalidPosition(f"too many positions in one request (max {limit})")
        positions = await state.receiver.accept(fixes, tenant_id=tenant)
    TRACCAR.accepted(len(positions))
    return {"status": "accepted", "count": len(positions)}


@router.get("/positions")
async def receive_url_forward(request: Request, state: StateDep, x_api_key: ApiKey = None) -> Any:
    """Accept Traccar's URL forwarder (GET with the documented query template).

    The key comes from ``X-API-Key`` (``forward.header``, which Traccar also sends for the
    URL type) or, failing that, an ``apiKey`` query parameter. The query string is never
    logged, so the key does not end up in our logs.
    """
    with TRACCAR.counting():
        query = request.url.query
        check_query_size(query)
        params = dict(parse_qsl(query, keep_blank_values=True))
        query_key = params.pop("apiKey", None)
        tenant = await authenticate_api_key(state, x_api_key or query_key)
        positions = await state.receiver.accept([parse_url_params(params)], tenant_id=tenant)
    TRACCAR.accepted(len(positions))
    return {"status": "accepted", "count": len(positions)}


class TraccarEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=64)
    eventTime: str | None = None
    id: int | None = None
    deviceId: int | None = None
    positionId: int | None = None
    geofenceId: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class TraccarEventBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: TraccarEvent
    device: TraccarDevice
    position: dict[str, Any] | None = None
    geofence: dict[str, Any] | None = None


@router.post("/events")
async def receive_event(request: Request, state: StateDep, x_api_key: ApiKey = None) -> Any:
    """Accept Traccar's event forwarding body and publish it to ``gps.events``."""
    with TRACCAR_EVENTS.counting():
        await _receive_event(request, state, x_api_key)
    TRACCAR_EVENTS.accepted(1)
    return {"status": "accepted"}


async def _receive_event(request: Request, state: StateDep, x_api_key: str | None) -> None:
    tenant = await authenticate_api_key(state, x_api_key)
    try:
        body = TraccarEventBody.model_validate(await read_json(request))
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidPosition("not a Traccar event", details=details) from exc
    uid = body.device.uniqueId
    known = await state.devices.resolve_many({uid})
    if uid not in known or (tenant is not None and known[uid].tenant_id != tenant):
        raise UnknownDevice([uid])
    now_ms = int(time.time() * 1000)
    message = {
        "schema": 1,
        "tenant_id": known[uid].tenant_id,
        "device_id": uid,
        "driver_id": known[uid].driver_id,
        "source": "traccar",
        "type": body.event.type,
        "event_time_ms": parse_iso_time(body.event.eventTime) if body.event.eventTime else now_ms,
        "received_ms": now_ms,
        "attributes": body.event.attributes,
        "geofence": body.geofence,
        "position": body.position,
    }
    await state.publisher.publish(GPS_EVENTS, [(uid.encode(), orjson.dumps(message))])
