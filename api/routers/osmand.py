"""The OsmAnd protocol receiver: phones (Traccar Client, OsmAnd) send their fixes here.

Served twice, by the same function (:func:`accept_osmand`) and the same process state:

* ``GET|POST /api/osmand`` on the main app (this router);
* ``GET|POST /`` (any path, as Traccar does) on its own port, ``settings.ingest.osmand_port``
  (default 5055), by the lean HTTP server of api/osmand_server.py that ``fleetpulse api``
  runs beside the main app in the same event loop, with the main app's state (pool,
  producer, device cache), so both ports behave identically.

Answers like Traccar: 200 with an empty body once Kafka acknowledged; 400 for anything that
is not a fix of a registered device (unknown devices are counted); 503 when Kafka does not
acknowledge (the phone keeps the fix and retries). No API key: the protocol has none; the
device unique id must be registered to a driver.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.dependencies import StateDep
from api.receiving import OSMAND_API, accept_osmand

router = APIRouter(prefix="/api/osmand", tags=["osmand"])


# One route per method: a route with both gets the same operation id twice in the OpenAPI.
@router.api_route("", methods=["GET"], response_class=Response, operation_id="osmand_get")
@router.api_route("", methods=["POST"], response_class=Response, operation_id="osmand_post")
@router.api_route("/", methods=["GET", "POST"], response_class=Response, include_in_schema=False)
async def osmand(request: Request, state: StateDep) -> Response:
    """OsmAnd protocol: query string, form body, or Traccar Client's JSON body."""
    with OSMAND_API.counting():
        body = await request.body()
        query, content_type = request.url.query, request.headers.get("content-type")
        OSMAND_API.accepted(await accept_osmand(state, query, content_type, body))
    return Response(status_code=200)
