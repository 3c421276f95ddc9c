"""What the position receivers share: the API key, the query-string bound, OsmAnd decoding.

The Traccar, batch and OsmAnd routers and the OsmAnd port's own server
(``api/osmand_server.py``) all call these.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Header

from api.errors import ApiError, PayloadTooLarge, Unauthorized
from api.state import AppState
from infrastructure.secrets import is_public
from infrastructure.seed import api_key_digest
from ingest.errors import InvalidPosition, UnknownDevice
from ingest.osmand import is_json_request, parse_request

ApiKey = Annotated[str | None, Header(alias="X-API-Key")]

# GET receivers (URL forwarding, OsmAnd) carry the fix in the query string: bound it like a
# body. 16 KiB is the request-line limit of common servers; real requests are under 1 KiB.
MAX_QUERY_BYTES = 16_384


def check_query_size(query: str) -> None:
    """Refuse an oversized query string with 413, like an oversized body."""
    if len(query) > MAX_QUERY_BYTES:
        raise PayloadTooLarge(f"query string exceeds {MAX_QUERY_BYTES} bytes")


async def authenticate_api_key(state: AppState, key: str | None) -> str | None:
    """Return the tenant a per-tenant key belongs to, None for the shared key; else raise."""
    if not key:
        raise Unauthorized("missing X-API-Key")
    if state.settings.environment != "test" and is_public(key):
        # the seed's per-tenant keys are in the repository: a database seeded before keys
        # were random still holds their digests
        raise Unauthorized("invalid X-API-Key")
    shared = state.settings.auth.traccar_api_key
    if shared is not None and hmac.compare_digest(key.encode(), shared.get_secret_value().encode()):
        return None
    async with state.pool.acquire() as conn:
        tenant = await conn.fetchval(
            "SELECT id FROM tenants WHERE traccar_api_key_sha256 = $1", api_key_digest(key)
        )
    if tenant is None:
        raise Unauthorized("invalid X-API-Key")
    return str(tenant)


class OsmAndRejected(ApiError):
    """Traccar answers 400 to anything it cannot take as a fix; so do we."""

    status, code = 400, "invalid_position"


class OsmAndJsonUnknownDevice(ApiError):
    """Traccar answers 404 to a JSON body of an unregistered device (query/form: 400)."""

    status, code = 404, "unknown_device"


async def accept_osmand(state: AppState, query: str, content_type: str | None, body: bytes) -> None:
    """Decode one OsmAnd request and publish its fix(es); return once Kafka acknowledged."""
    check_query_size(query)
    try:
        fixes = parse_request(
            query,
            content_type,
            body,
            now_ms=int(time.time() * 1000),
            json_min_accuracy_m=state.settings.ingest.osmand_json_min_accuracy_m,
        )
        # a fix older than the retention is acknowledged, not stored: Traccar accepts it, and
        # a phone that got 400 would retry it forever (docs/receivers.md)
        await state.receiver.accept(fixes, discard_old=True)
    except InvalidPosition as exc:
        raise OsmAndRejected(str(exc), details=exc.details or None) from exc
    except UnknownDevice as exc:
        if is_json_request(content_type):
            details = {"deviceIds": exc.device_ids}
            raise OsmAndJsonUnknownDevice(str(exc), details=details) from exc
        raise
