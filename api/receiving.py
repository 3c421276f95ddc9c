"""What the position receivers share: the API key, the query-string bound, OsmAnd decoding.

The Traccar, batch and OsmAnd routers and the OsmAnd port's own server
(``api/osmand_server.py``) all call these.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Header

from api.errors import ApiError, PayloadTooLarge, Unauthorized
from api.state import AppState
from infrastructure.metrics import (
    RECEIVER_POSITIONS_ACCEPTED,
    RECEIVER_REFUSALS,
    RECEIVER_UNAVAILABLE,
)
from infrastructure.outages import OUTAGE_ERRORS
from infrastructure.secrets import is_public
from infrastructure.seed import api_key_digest
from ingest.errors import IngestError, InvalidPosition, UnknownDevice
from ingest.osmand import is_json_request, parse_request

ApiKey = Annotated[str | None, Header(alias="X-API-Key")]

# GET receivers (URL forwarding, OsmAnd) carry the fix in the query string: bound it like a
# body. 16 KiB is the request-line limit of common servers; real requests are under 1 KiB.
MAX_QUERY_BYTES = 16_384


# Error codes a client gets with a 503: the receiver could not get Kafka's acknowledgement.
UNAVAILABLE_REASONS = frozenset({"broker_unavailable", "service_unavailable"})


def refusal_reason(exc: BaseException) -> str:
    """The error code a refused request is answered with (a bounded set: metric labels)."""
    if isinstance(exc, ApiError | IngestError):
        return exc.code
    if isinstance(exc, OUTAGE_ERRORS):
        return "service_unavailable"
    return "internal_error"


class Receipts:
    """One receiver's Prometheus counters: positions accepted, refusals by reason, 503s."""

    def __init__(self, receiver: str) -> None:
        self.receiver = receiver
        self._accepted = RECEIVER_POSITIONS_ACCEPTED.labels(receiver)
        self._unavailable = RECEIVER_UNAVAILABLE.labels(receiver)

    def accepted(self, n: int) -> None:
        if n:
            self._accepted.inc(n)

    def refuse(self, reason: str, n: int = 1) -> None:
        RECEIVER_REFUSALS.labels(self.receiver, reason).inc(n)
        if reason in UNAVAILABLE_REASONS:
            self._unavailable.inc(n)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count an exception that escapes the block as a refusal, then let it go on."""
        try:
            yield
        except Exception as exc:
            self.refuse(refusal_reason(exc))
            raise


TRACCAR = Receipts("traccar")
TRACCAR_EVENTS = Receipts("traccar_events")
BATCH = Receipts("batch")
OSMAND_API = Receipts("osmand_api")  # /api/osmand on the main port
OSMAND = Receipts("osmand")  # the OsmAnd port (5055), what phones talk to


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


async def accept_osmand(state: AppState, query: str, content_type: str | None, body: bytes) -> int:
    """Decode one OsmAnd request and publish its fix(es); return once Kafka acknowledged,
    with how many were published."""
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
        return len(await state.receiver.accept(fixes, discard_old=True))
    except InvalidPosition as exc:
        raise OsmAndRejected(str(exc), details=exc.details or None) from exc
    except UnknownDevice as exc:
        if is_json_request(content_type):
            details = {"deviceIds": exc.device_ids}
            raise OsmAndJsonUnknownDevice(str(exc), details=details) from exc
        raise
