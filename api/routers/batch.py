"""The batch endpoint for gateways and replays: many positions per request, line by line.

``POST /api/positions/batch`` with ``X-API-Key`` (the same keys as the Traccar webhook), body
NDJSON (``application/x-ndjson``) or a JSON array (``application/json``), at most
``settings.ingest.max_batch_positions`` positions and ``max_body_bytes`` bytes. Every line is
validated on its own; the valid ones are produced in one Kafka batch and the answer comes
after Kafka acknowledged all of them:
``200 {"accepted": n, "rejected": [{"line": i, "error": code, "message": text}]}``.
If Kafka does not acknowledge: 503 and nothing counts as accepted (send the batch again;
history is idempotent on driver and fix time, so a re-sent line is stored once).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.dependencies import StateDep
from api.errors import ApiError, PayloadTooLarge
from api.receiving import BATCH, ApiKey, authenticate_api_key
from ingest.batch import BatchTooLarge, Line, split_json_array, split_ndjson
from ingest.errors import InvalidPosition
from ingest.model import Fix, Position

router = APIRouter(prefix="/api/positions", tags=["positions"])

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class EmptyBatch(ApiError):
    status, code = 400, "empty_batch"


@router.post("/batch")
async def receive_batch(request: Request, state: StateDep, x_api_key: ApiKey = None) -> Any:
    """Accept NDJSON or a JSON array of positions; per-line errors in the answer."""
    with BATCH.counting():
        positions, rejected = await _receive_batch(request, state, x_api_key)
    BATCH.accepted(len(positions))
    for _, _, code in rejected:
        BATCH.refuse(code)
    return {
        "accepted": len(positions),
        "rejected": [
            {"line": number, "error": code, "message": str(exc)} for number, exc, code in rejected
        ],
    }


async def _receive_batch(
    request: Request, state: StateDep, x_api_key: str | None
) -> tuple[list[Position], list[tuple[int, InvalidPosition | Exception, str]]]:
    tenant = await authenticate_api_key(state, x_api_key)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES and media != "application/json":
        raise UnsupportedMediaType(
            "send application/x-ndjson (one position per line) or application/json (an array)"
        )
    body = await request.body()
    max_lines = state.settings.ingest.max_batch_positions
    try:
        if media == "application/json":
            lines = split_json_array(body, max_lines=max_lines)
        else:
            lines = split_ndjson(body, max_lines=max_lines)
    except BatchTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    if not lines:
        raise EmptyBatch("the batch holds no positions")
    parsed: list[tuple[Line, Fix]] = [(ln, ln.fix) for ln in lines if ln.fix is not None]
    positions, refused = await state.receiver.accept_valid(
        [fix for _, fix in parsed], tenant_id=tenant
    )
    rejected: list[tuple[int, InvalidPosition | Exception, str]] = [
        (ln.number, ln.error, ln.error.code) for ln in lines if ln.error is not None
    ]
    rejected += [(parsed[i][0].number, exc, exc.code) for i, exc in refused.items()]
    rejected.sort(key=lambda r: r[0])
    return positions, rejected
