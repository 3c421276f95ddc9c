"""Every FleetPulse process's /metrics, scraped from real running processes.

The api, an enrichment worker, the CDC consumer and the maintenance loop run as child
processes (``python -m api.cli ...``, as ``fleetpulse run`` starts them), each with its own
metrics port, on a pipeline of their own (topic and Redis prefix) over this run's database.
The test makes them do real work — positions accepted and refused on the webhook and the
OsmAnd port, a request to a route with an id in its path, a live viewer, an undecodable
record for the worker's dead letters, a change event applied and a malformed one for the
CDC consumer's, rollups refreshed — and then checks that every family the issue lists is
there with sane values, that no label carries an id, and that every metric a Grafana panel or
an alert rule uses (deploy/) is exposed by the processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.kafka import create_producer, ensure_topics
from infrastructure.settings import Settings
from tests.conftest import make_settings, settings_env
from tests.helpers import eventually, seed_array_item

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
JOHN = "a1b2c3d4-0001-4000-8000-000000000001"  # DEV001's driver, tenant-1
ROLES = ("api", "worker", "cdc", "maintain")
# Warehouse of the seed's tenant-1 (a geofenced customer): fixes there may enter it.
LAT, LON = 40.7128, -74.006


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Scrape:
    """One process's /metrics: samples by name, and the families it declares."""

    text: str
    samples: dict[str, list[tuple[dict[str, str], float]]]
    families: set[str]

    def values(self, name: str, **labels: str) -> list[float]:
        return [
            v
            for got, v in self.samples.get(name, [])
            if all(got.get(k) == want for k, want in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(self.values(name, **labels))


def parse(text: str) -> Scrape:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        if family.type == "counter":  # declared, maybe without a labelled sample yet
            families.add(f"{family.name}_total")
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return Scrape(text, samples, families)


@dataclass
class Processes:
    base_url: str
    osmand_url: str
    metrics: dict[str, str]  # role -> /metrics URL
    settings: Settings
    started: float


@contextlib.contextmanager
def spawned(settings: Settings, logs: Path) -> Iterator[Processes]:
    ports = {role: free_port() for role in ROLES}
    http, osmand = free_port(), free_port()
    env = settings_env(settings) | {
        "FLEETPULSE_METRICS__HOST": "127.0.0.1",
        "FLEETPULSE_METRICS__API_PORT": str(ports["api"]),
        "FLEETPULSE_METRICS__WORKER_PORT": str(ports["worker"]),
        "FLEETPULSE_METRICS__CDC_PORT": str(ports["cdc"]),
        "FLEETPULSE_METRICS__MAINTAIN_PORT": str(ports["maintain"]),
        "FLEETPULSE_INGEST__OSMAND_PORT": str(osmand),
        "FLEETPULSE_ANALYTICS__REFRESH_INTERVAL_S": "1",
    }
    commands = {
        "api": ["api", "--host", "127.0.0.1", "--port", str(http)],
        "worker": ["worker"],
        "cdc": ["cdc"],
        "maintain": ["maintain", "--loop"],
    }
    logs.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    started = time.time()
    try:
        for role, args in commands.items():
            with open(logs / f"{role}.log", "wb") as log:  # the child keeps its descriptor
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "api.cli", *args],
                        env=env,
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield Processes(
            f"http://127.0.0.1:{http}",
            f"http://127.0.0.1:{osmand}",
            {role: f"http://127.0.0.1:{port}/metrics" for role, port in ports.items()},
            settings,
            started,
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


@pytest.fixture(scope="module")
async def processes(
    database: str, redis_clean: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Processes]:
    """The four processes on a pipeline of their own (the run's database, own topics)."""
    settings = make_settings("-metrics")
    await ensure_topics(settings.kafka)
    with spawned(settings, tmp_path_factory.mktemp("metrics-logs")) as procs:
        async with httpx.AsyncClient(timeout=10) as http:

            async def answering() -> int:
                up = 0
                for url in [f"{procs.base_url}/api/health/ready", *procs.metrics.values()]:
                    with contextlib.suppress(httpx.TransportError):
                        up += (await http.get(url)).status_code == 200
                return up

            await eventually(answering, lambda n: n == 5, within=90, what="processes up")
        yield procs


async def scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    resp = await http.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


async def test_every_process_exposes_every_family_with_sane_values(
    processes: Processes,
) -> None:
    settings = processes.settings
    now_ms = int(time.time() * 1000)
    key = {"X-API-Key": "traccar-shared-key"}
    async with httpx.AsyncClient(base_url=processes.base_url, timeout=20) as api:
        # receivers: accepted on the webhook (in the seed warehouse's geofence) and on the
        # OsmAnd port, refused for an unknown device
        fixes = [
            seed_array_item("DEV001", now_ms - (40 - 10 * i) * 1000, LAT, LON) for i in range(4)
        ]
        resp = await api.post("/api/traccar/positions", json=fixes, headers=key)
        assert resp.status_code == 200, resp.text
        resp = await api.post(
            "/api/traccar/positions",
            json=[seed_array_item("NO-SUCH-DEVICE", now_ms, LAT, LON)],
            headers=key,
        )
        assert resp.status_code == 400, resp.text
        async with httpx.AsyncClient(timeout=20) as phone:
            resp = await phone.post(
                processes.osmand_url,
                data={
                    "id": "DEV002",
                    "lat": "60.17",
                    "lon": "24.94",
                    "timestamp": str(now_ms // 1000),
                },
            )
            assert resp.status_code == 200, resp.text
        # a route whose path carries an id
        login = await api.post(
            "/api/auth/login",
            json={"email": "admin@tenant1.com", "password": "admin123", "tenantId": "tenant-1"},
        )
        assert login.status_code == 200, login.text
        token = login.json()["accessToken"]
        resp = await api.get(f"/api/drivers/{JOHN}", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        # an undecodable position (worker dead letter), CDC: one change applied, one malformed
        producer = create_producer(settings.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.kafka.topic("gps.positions"), key=b"DEV001", value=b"{not json"
            )
            account = uuid.uuid4().int % 1_000_000_000 + 1_000_000
            change = {
                "op": "c",
                "after": {
                    "id": account,
                    "tenant_id": "tenant-1",
                    "name": "Metrics test account",
                    "account_type": "business",
                    "settings": "{}",
                    "created_at": now_ms,
                    "updated_at": now_ms,
                },
                "source": {
                    "table": "accounts",
                    "file": "mariadb-bin.000001",
                    "pos": 4,
                    "ts_ms": now_ms,
                },
            }
            topic = settings.kafka.topic("cdc.accounts")
            await producer.send_and_wait(topic, key=b"1", value=orjson.dumps(change))
            await producer.send_and_wait(
                settings.kafka.topic("cdc.customers"), key=b"2", value=b"{not json"
            )
        finally:
            await producer.stop()
        # a live viewer, connected while the api is scraped
        viewer = socketio.AsyncClient(reconnection=False)
        await viewer.connect(
            processes.base_url,
            namespaces=["/tracking"],
            auth={"token": token, "batches": True},
            transports=["websocket"],
            wait_timeout=10,
        )
        try:
            async with httpx.AsyncClient(timeout=10) as http:

                async def everything() -> dict[str, Scrape]:
                    return {r: await scrape(http, u) for r, u in processes.metrics.items()}

                def settled(s: dict[str, Scrape]) -> bool:
                    return (
                        s["worker"].total("fleetpulse_enrichment_fixes_consumed_total") >= 6
                        and s["worker"].total("fleetpulse_enrichment_dead_letters_total") >= 1
                        and s["cdc"].total("fleetpulse_cdc_events_total", outcome="applied") >= 1
                        and s["cdc"].total("fleetpulse_cdc_dead_letters_total") >= 1
                        and s["api"].total("fleetpulse_live_viewers") >= 1
                        and bool(s["worker"].values("fleetpulse_enrichment_consumer_lag_records"))
                        and bool(
                            s["maintain"].values(
                                "fleetpulse_aggregate_refresh_last_success_timestamp_seconds",
                                aggregate="positions_1m",
                            )
                        )
                    )

                scrapes = await eventually(everything, settled, within=90, what="all families")
        finally:
            await viewer.disconnect()

    api_m, worker, cdc, maint = (scrapes[r] for r in ROLES)
    for role, s in scrapes.items():  # which process it is, and the process metrics
        assert s.values("fleetpulse_process_info", role=role) == [1.0], role
        assert s.total("process_cpu_seconds_total") > 0, role
        assert s.total("process_resident_memory_bytes") > 10_000_000, role

    # receivers
    assert api_m.total("fleetpulse_receiver_positions_accepted_total", receiver="traccar") == 4
    assert api_m.total("fleetpulse_receiver_positions_accepted_total", receiver="osmand") == 1
    refused = api_m.values(
        "fleetpulse_receiver_refusals_total", receiver="traccar", reason="unknown_device"
    )
    assert refused == [1.0]
    assert api_m.total("fleetpulse_receiver_unavailable_responses_total") == 0
    assert (
        api_m.total("fleetpulse_receiver_produce_duration_seconds_count") == 2
    )  # traccar once, osmand once
    assert 0 < api_m.total("fleetpulse_receiver_produce_duration_seconds_sum") < 10
    # HTTP: route templates, never a raw path or an id
    assert api_m.values(
        "fleetpulse_http_requests_total",
        method="GET",
        route="/api/drivers/{driver_id}",
        status="200",
    ) == [1.0]
    assert (
        api_m.total("fleetpulse_http_requests_total", route="/api/traccar/positions", status="400")
        == 1
    )
    assert (
        api_m.total("fleetpulse_http_request_duration_seconds_count", route="/api/auth/login") >= 1
    )
    assert (
        JOHN not in api_m.text and "NO-SUCH-DEVICE" not in api_m.text and "DEV00" not in api_m.text
    )
    routes = {lb["route"] for lb, _ in api_m.samples["fleetpulse_http_requests_total"]}
    assert all(r.startswith("/") or r == "unmatched" for r in routes), routes
    # live feed
    assert api_m.total("fleetpulse_live_viewers") == 1
    assert api_m.values("fleetpulse_live_rooms", kind="tenant") == [1.0]  # the viewer's room
    for name in ("frames_sent", "frames_dropped", "slow_disconnects", "positions_received"):
        (count,) = api_m.values(f"fleetpulse_live_{name}_total")
        assert count >= 0, name
    # enrichment
    assert worker.total("fleetpulse_enrichment_fixes_consumed_total") == 6  # 5 fixes + 1 bad
    assert worker.total("fleetpulse_enrichment_positions_stored_total") == 5
    assert worker.total("fleetpulse_enrichment_dead_letters_total") == 1
    assert worker.total("fleetpulse_enrichment_batch_duration_seconds_count") >= 1
    assert "fleetpulse_enrichment_eta_computations" in worker.families
    lags = worker.samples.get("fleetpulse_enrichment_consumer_lag_records", [])
    assert lags and all(v >= 0 for _, v in lags)
    assert {lb["partition"] for lb, _ in lags} <= {str(p) for p in range(6)}
    # known label values start at 0; the fixes above may or may not have entered a geofence
    for event in ("enter", "exit"):
        (count,) = worker.values("fleetpulse_enrichment_geofence_events_total", event=event)
        assert count >= 0
    statuses = {lb["status"] for lb, _ in worker.samples["fleetpulse_visit_transitions_total"]}
    assert {"arrived", "departed", "completed"} <= statuses
    # CDC
    assert cdc.total("fleetpulse_cdc_events_total", table="accounts", outcome="applied") == 1
    assert cdc.values("fleetpulse_cdc_dead_letters_total", table="customers") == [1.0]
    (lag,) = cdc.values("fleetpulse_cdc_lag_seconds", table="accounts")
    assert 0 <= lag < 3600
    (applied_at,) = cdc.values("fleetpulse_cdc_last_applied_timestamp_seconds", table="accounts")
    assert processes.started <= applied_at <= time.time() + 1
    waiting = {lb["table"] for lb, _ in cdc.samples["fleetpulse_cdc_consumer_lag_records"]}
    assert waiting == {"accounts", "customers", "products", "orders", "users"}
    # maintenance
    (last,) = maint.values(
        "fleetpulse_aggregate_refresh_last_success_timestamp_seconds", aggregate="positions_1m"
    )
    assert processes.started <= last <= time.time() + 1
    assert (
        maint.total("fleetpulse_aggregate_refresh_duration_seconds_count", aggregate="positions_1m")
        >= 1
    )
    assert maint.total("fleetpulse_maintenance_passes_total", outcome="ok") >= 1
    assert "fleetpulse_aggregate_refresh_rows" in maint.families

    # every metric the dashboard and the alerts use is exposed by these processes
    exposed = {name for s in scrapes.values() for name in s.samples} | {
        name for s in scrapes.values() for name in s.families
    }
    used = used_metrics()
    assert len(used) >= 25
    missing = sorted(used - exposed)
    assert not missing, f"used by deploy/ but exposed by no process: {missing}"


def used_metrics() -> set[str]:
    """Metric names in the Grafana dashboard's and the alert rules' expressions."""
    import yaml

    exprs = [
        t["expr"]
        for p in json.loads((DEPLOY / "grafana/dashboards/fleetpulse.json").read_text())["panels"]
        for t in p.get("targets", [])
    ]
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {
        name
        for expr in exprs
        for name in re.findall(r"\b((?:fleetpulse|process)_[a-z0-9_]+)", expr)
    }


def test_metric_names_follow_prometheus_conventions() -> None:
    """The fleetpulse_ prefix in lower snake case, times in seconds (the client library
    appends _total to counters)."""
    from prometheus_client import REGISTRY

    from infrastructure.metrics import LIVE_FEED

    families = [*REGISTRY.collect(), *LIVE_FEED.describe()]  # the live feed's: in an api only
    names = {m.name: m.type for m in families if m.name.startswith("fleetpulse_")}
    assert len(names) >= 35
    for name, kind in names.items():
        assert re.fullmatch(r"fleetpulse_[a-z0-9_]+", name), name
        if kind == "histogram":  # every histogram here measures time
            assert name.endswith("_seconds"), name
        if "time" in name or "duration" in name or "lag_seconds" in name:
            assert name.endswith(("_seconds", "_timestamp_seconds")), name
