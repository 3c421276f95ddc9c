"""api/http_metrics.py and the receivers' refusal reasons: labels are templates and codes,
never a raw path or an id."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from api.errors import Unauthorized
from api.http_metrics import HttpMetrics
from api.receiving import refusal_reason
from ingest.errors import BrokerUnavailable, InvalidPosition, UnknownDevice


def requests(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "fleetpulse_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


async def test_requests_are_counted_by_route_template_and_status() -> None:
    async def driver(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def fail(request: object) -> PlainTextResponse:
        raise RuntimeError("boom")

    static = PlainTextResponse("file")  # an ASGI app without routes, as StaticFiles is
    app = Starlette(
        routes=[
            Route(f"/t{uuid.uuid4().hex[:6]}/drivers/{{driver_id}}", driver),
            Route("/fail-metrics-test", fail),
            Mount("/static-metrics-test", static),
        ]
    )
    template = app.routes[0].path  # type: ignore[attr-defined]
    before = {
        "ok": requests("GET", template, "200"),
        "unmatched": requests("GET", "unmatched", "404"),
        "fail": requests("GET", "/fail-metrics-test", "500"),
        "mount": requests("GET", "/static-metrics-test/{path:path}", "200"),
    }
    ids = [str(uuid.uuid4()) for _ in range(3)]
    transport = httpx.ASGITransport(app=HttpMetrics(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for driver_id in ids:
            prefix = template.split("/drivers/")[0]
            assert (await client.get(f"{prefix}/drivers/{driver_id}")).status_code == 200
        assert (await client.get(f"/nowhere/{ids[0]}")).status_code == 404
        assert (await client.get("/fail-metrics-test")).status_code == 500
        assert (await client.get("/static-metrics-test/app.js")).status_code == 200
    assert requests("GET", template, "200") - before["ok"] == 3
    assert requests("GET", "unmatched", "404") - before["unmatched"] == 1
    assert requests("GET", "/fail-metrics-test", "500") - before["fail"] == 1
    assert requests("GET", "/static-metrics-test/{path:path}", "200") - before["mount"] == 1
    count = REGISTRY.get_sample_value(
        "fleetpulse_http_request_duration_seconds_count", {"method": "GET", "route": template}
    )
    assert count == 3
    exposed = "\n".join(f"{s.name}{s.labels}" for m in REGISTRY.collect() for s in m.samples)
    assert not any(i in exposed for i in ids)


def test_a_refusal_is_labelled_with_the_error_code_the_client_gets() -> None:
    assert refusal_reason(UnknownDevice(["DEV-X"])) == "unknown_device"
    assert refusal_reason(InvalidPosition("bad lat")) == "invalid_position"
    assert refusal_reason(Unauthorized("missing X-API-Key")) == "unauthorized"
    assert refusal_reason(BrokerUnavailable("no ack")) == "broker_unavailable"
    assert refusal_reason(ConnectionResetError()) == "service_unavailable"
    assert refusal_reason(KeyError("x")) == "internal_error"
