"""What the Prometheus instrumentation costs on the hot paths, in CPU microseconds.

Measures, in this process, exactly the metric calls each path makes:

* ``osmand_request``: one OsmAnd-port request (a position per request): the accepted counter
  and the produce-latency histogram timer;
* ``http_request``: the HTTP middleware (route template, counter, histogram) around a
  trivial Starlette route, as the difference with and without it, per request;
* ``worker_batch``: what ``measured_batch`` adds to one consumed batch (a timer, five counter
  increments), and per fix for a batch of ``--batch`` fixes;
* ``outbox_event``: counting one published geofence event or visit transition;
* ``scrape_api``: one scrape of the api's families (with ``--viewers`` fake viewers' rooms).

    python -m bench.metrics_overhead [--n 200000] [--batch 850]

Prints JSON. Compare with the per-position costs in the README's benchmark table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.http_metrics import HttpMetrics
from api.receiving import OSMAND
from infrastructure.metrics import (
    ENRICHMENT_BATCH_SECONDS,
    ENRICHMENT_DEAD_LETTERS,
    ENRICHMENT_FIXES_CONSUMED,
    ENRICHMENT_POSITIONS_STORED,
    ENRICHMENT_RETRIES,
    RECEIVER_PRODUCE_SECONDS,
)
from ingest.visit_lifecycle import count_published


def cpu_us_per_call(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call of ``fn`` (best of 3 runs of n calls)."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def osmand_request() -> None:
    with RECEIVER_PRODUCE_SECONDS.time():
        pass
    OSMAND.accepted(1)


def worker_batch(size: int) -> Callable[[], None]:
    def batch() -> None:
        started = time.perf_counter()
        ENRICHMENT_BATCH_SECONDS.observe(time.perf_counter() - started)
        ENRICHMENT_FIXES_CONSUMED.inc(size)
        ENRICHMENT_POSITIONS_STORED.inc(size)
        ENRICHMENT_DEAD_LETTERS.inc(0)
        ENRICHMENT_RETRIES.inc(0)

    return batch


async def http_us_per_request(n: int) -> dict[str, float]:
    """CPU µs per request through a bare app and through HttpMetrics around it."""

    async def endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    bare = Starlette(routes=[Route("/api/drivers/{driver_id}", endpoint)])
    wrapped = HttpMetrics(bare)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/drivers/a1b2c3d4",
        "raw_path": b"/api/drivers/a1b2c3d4",
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "http_version": "1.1",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def run(app: Any) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            for _ in range(n):
                await app(dict(scope), receive, send)
            best = min(best, time.process_time() - t)
        return best / n * 1e6

    without = await run(bare)
    with_metrics = await run(wrapped)
    return {
        "without_us": round(without, 2),
        "with_us": round(with_metrics, 2),
        "overhead_us": round(with_metrics - without, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="calls per measurement")
    p.add_argument("--batch", type=int, default=850, help="fixes in a worker batch")
    args = p.parse_args()
    n = args.n
    osmand_us = cpu_us_per_call(osmand_request, n)
    batch_us = cpu_us_per_call(worker_batch(args.batch), n // 4)
    event = (
        "1",
        "gps.events",
        "k",
        orjson.dumps({"type": "geofenceEnter", "id": "x", "attributes": {}}),
    )
    event_us = cpu_us_per_call(lambda: count_published([event]), n // 4)
    http = asyncio.run(http_us_per_request(max(1, n // 20)))
    t = time.process_time()
    for _ in range(100):
        body = generate_latest(REGISTRY)
    scrape_ms = (time.process_time() - t) / 100 * 1e3
    print(
        json.dumps(
            {
                "osmand_request_us": round(osmand_us, 2),
                "http_request": http,
                "worker_batch_us": round(batch_us, 2),
                "worker_per_fix_ns": round(batch_us / args.batch * 1000, 1),
                "batch_fixes": args.batch,
                "outbox_event_us": round(event_us, 2),
                "scrape_ms": round(scrape_ms, 2),
                "scrape_bytes": len(body),
                "calls": n,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
