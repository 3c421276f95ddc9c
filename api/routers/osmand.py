"""The OsmAnd protocol receiver: phones (Traccar Client, OsmAnd) send their fixes here.

Served twice, with the same handler and the same process state:

* ``GET|POST /api/osmand`` on the main app;
* ``GET|POST /`` (any path, as Traccar does) on its own port, ``settings.ingest.osmand_port``
  (default 5055), by :func:`create_osmand_app` — a second small ASGI app that ``fleetpulse
  api`` serves beside the main one in the same event loop and that borrows the main app's
  state (pool, producer, device cache), so both ports behave identically.

Answers like Traccar: 200 with an empty body once Kafka acknowledged; 400 for anything that
is not a fix of a registered device (unknown devices are counted); 503 when Kafka does not
acknowledge (the phone keeps the fix and retries). No API key: the protocol has none; the
device unique id must be registered to a driver.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from api.dependencies import StateDep
from api.errors import ApiError, ServiceUnavailable, install_error_handlers
from api.limits import BodySizeLimit
from api.responses import OrjsonResponse
from api.routers.traccar import check_query_size
from api.state import AppState
from infrastructure.settings import Settings
from ingest.errors import InvalidPosition
from ingest.osmand import parse_request

router = APIRouter(prefix="/api/osmand", tags=["osmand"])


class OsmAndRejected(ApiError):
    """Traccar answers 400 to anything it cannot take as a fix; so do we."""

    status, code = 400, "invalid_position"


async def receive_osmand(request: Request, state: AppState) -> Response:
    """Decode one OsmAnd request, publish its fix(es), answer 200 with an empty body."""
    query = request.url.query
    check_query_size(query)
    body = await request.body()
    try:
        fixes = parse_request(
            query,
            request.headers.get("content-type"),
            body,
            now_ms=int(time.time() * 1000),
        )
        await state.receiver.accept(fixes)
    except InvalidPosition as exc:
        raise OsmAndRejected(str(exc), details=exc.details or None) from exc
    return Response(status_code=200)


# One route per method: a route with both gets the same operation id twice in the OpenAPI.
@router.api_route("", methods=["GET"], response_class=Response, operation_id="osmand_get")
@router.api_route("", methods=["POST"], response_class=Response, operation_id="osmand_post")
@router.api_route("/", methods=["GET", "POST"], response_class=Response, include_in_schema=False)
async def osmand(request: Request, state: StateDep) -> Response:
    """OsmAnd protocol: query string, form body, or Traccar Client's JSON body."""
    return await receive_osmand(request, state)


async def borrowed_state(request: Request) -> AppState:
    """The main app's state, for the OsmAnd app that has no lifespan of its own.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which
    costs more than the rest of this request.
    """
    state: AppState | None = getattr(request.app.state.main_app.state, "fleetpulse", None)
    if state is None:
        raise ServiceUnavailable("the receiver is starting, retry later")
    return state


BorrowedStateDep = Annotated[AppState, Depends(borrowed_state)]


def create_osmand_app(settings: Settings, main_app: FastAPI) -> FastAPI:
    """The OsmAnd-only app for the protocol's own port, sharing ``main_app``'s state.

    It has no lifespan: the main app's lifespan creates the pool and the producer, and
    ``fleetpulse api`` starts this app's server only once the main one has started.
    """
    app = FastAPI(
        title="FleetPulse OsmAnd receiver",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.ingest.max_body_bytes)

    app.state.main_app = main_app

    @app.api_route("/{path:path}", methods=["GET", "POST"], response_class=Response)
    async def osmand_any_path(request: Request, state: BorrowedStateDep) -> Response:
        return await receive_osmand(request, state)

    return app
