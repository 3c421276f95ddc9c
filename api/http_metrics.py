"""HTTP request metrics by route *template* (``/api/drivers/{driver_id}``, never the raw path).

A pure ASGI middleware: Starlette's router writes the matched route into the request scope,
which this reads once the answer has gone, so an id in a path never becomes a label value.
Requests that match no route are counted under ``unmatched``; the dashboard's static files
under their mount.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

UNMATCHED = "unmatched"
# Methods outside this set (anyone may send any token) are counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route that answered, or ``unmatched``.

    A mount is labelled ``<mount>/{path:path}`` (the dashboard's static files: the only one
    the app has); a routed sub-app under a mount would be labelled by its inner template.
    """
    route: Any = scope.get("route")
    if route is None:
        return UNMATCHED
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    if isinstance(route, Mount):
        return f"{path}/{{path:path}}"
    return path or "/"


class HttpMetrics:
    """Counts every HTTP request by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes becomes ServerErrorMiddleware's 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
