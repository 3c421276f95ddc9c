"""One map from exception class to HTTP status, and the handler installer.

Only real 5xx are logged with a traceback; a database or broker error's text never reaches a
client. Every error body is ``{"error": code, "message": text}`` (plus ``details`` sometimes).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from analytics.errors import InvalidQuery
from api.responses import OrjsonResponse
from geo.areas import InvalidArea
from infrastructure.outages import OUTAGE_ERRORS
from ingest.dead_letters import DeadLetterNotFound
from ingest.errors import BrokerUnavailable, IngestError, InvalidPosition, UnknownDevice
from ingest.visit_lifecycle import TransitionNotAllowed

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the edge raises on purpose, with its status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class InvalidJSON(ApiError):
    status, code = 400, "invalid_json"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class InvalidInput(ApiError):
    """A well-formed request whose content is wrong (an invalid geometry, say): 422."""

    status, code = 422, "invalid_input"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(1, retry_after_s)


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


# Exceptions from the packages below the edge, mapped without those packages knowing HTTP.
INGEST_STATUS: dict[type[IngestError], int] = {
    InvalidPosition: 422,
    UnknownDevice: 400,
    BrokerUnavailable: 503,
    DeadLetterNotFound: 404,
}


# "Bad input" exceptions of the packages below, answered with their own message.
BAD_INPUT: dict[type[ValueError], tuple[int, str]] = {
    InvalidQuery: (400, "bad_request"),  # an analytics window, bbox, metric, resolution
    InvalidArea: (422, "invalid_input"),  # a bbox or polygon of a live query
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return body


def error_response(exc: BaseException, what: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for an error raised while serving ``what`` (for logs).

    The one map from exception to answer: FastAPI's handlers below and the OsmAnd port's own
    HTTP server (api/osmand_server.py) both use it.
    """
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return exc.status, error_body(exc.code, exc.message, exc.details), headers
    if isinstance(exc, IngestError):
        status = next((s for t, s in INGEST_STATUS.items() if isinstance(exc, t)), 400)
        details: Any = None
        if isinstance(exc, InvalidPosition):
            details = exc.details
        elif isinstance(exc, UnknownDevice):
            details = {"deviceIds": exc.device_ids}
        if status >= 500:
            log.warning("%s answered %s: %s", what, status, exc)
            body = error_body(exc.code, "the position store is unavailable, retry later")
            return status, body, {"Retry-After": "5"}
        return status, error_body(exc.code, str(exc), details), {}
    if isinstance(exc, TransitionNotAllowed):
        details = {
            "current": exc.current,
            "requested": exc.requested,
            "allowedNext": sorted(exc.allowed),
        }
        return 409, error_body("conflict", str(exc), details), {}
    bad_input = next((v for t, v in BAD_INPUT.items() if isinstance(exc, t)), None)
    if bad_input is not None:
        return bad_input[0], error_body(bad_input[1], str(exc)), {}
    if isinstance(exc, OUTAGE_ERRORS):
        log.warning("%s: dependency unavailable: %r", what, exc)
        body = error_body("service_unavailable", "a dependency is unavailable, retry later")
        return 503, body, {"Retry-After": "5"}
    log.error("unhandled error on %s", what, exc_info=exc)
    return 500, error_body("internal_error", "internal server error"), {}


def _answer(request: Request, exc: Exception) -> OrjsonResponse:
    status, body, headers = error_response(exc, f"{request.method} {request.url.path}")
    return OrjsonResponse(body, status, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> OrjsonResponse:
        return _answer(request, exc)

    @app.exception_handler(IngestError)
    async def _ingest_error(request: Request, exc: IngestError) -> OrjsonResponse:
        return _answer(request, exc)

    async def _bad_input(request: Request, exc: Exception) -> OrjsonResponse:
        return _answer(request, exc)

    for exc_class in (*BAD_INPUT, TransitionNotAllowed):
        app.add_exception_handler(exc_class, _bad_input)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> OrjsonResponse:
        details = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        return OrjsonResponse(error_body("validation_error", "invalid request", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return OrjsonResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> OrjsonResponse:
        return _answer(request, exc)
