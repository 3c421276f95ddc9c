"""Health (what is up, versions, worker lag) and readiness (can we accept positions now)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from api.dependencies import StateDep
from api.responses import OrjsonResponse
from api.state import AppState
from infrastructure.kafka import GPS_POSITIONS, consumer_group_lag
from infrastructure.migrate import history_backend
from infrastructure.postgres import server_versions, timescale_jobs, timescale_version
from ingest.cdc.lag import lag_snapshot

router = APIRouter(prefix="/api/health", tags=["health"])
PROBE_TIMEOUT_S = 3.0


async def _postgres(state: AppState) -> dict[str, Any]:
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        async with state.pool.acquire() as conn:
            version, postgis, timescale = await server_versions(conn)
            backend = await history_backend(conn)
    return {
        "status": "up",
        "version": version,
        "postgis": postgis,
        "timescaledb": timescale,
        "historyBackend": "hypertable" if backend == "timescale" else "partitioned",
    }


async def _timescale(state: AppState) -> dict[str, Any]:
    """TimescaleDB and its background jobs: degraded when a job's last run failed."""
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        async with state.pool.acquire() as conn:
            version = await timescale_version(conn)
            if version is None:  # plain PostgreSQL: a supported backend, nothing to watch
                return {"status": "disabled"}
            jobs = await timescale_jobs(conn)
    failing = [j for j in jobs if j["last_run_status"] == "Failed"]
    return {
        "status": "degraded" if failing else "up",
        "version": version,
        "jobs": [
            {
                "id": j["job_id"],
                "job": j["proc_name"],
                "relation": j["relation"],
                "lastRunStatus": j["last_run_status"],
                "lastRunStartedAt": _iso(j["last_run_started_at"]),
                "lastSuccessAt": _iso(j["last_successful_finish"]),
                "failures": j["total_failures"],
                "nextStart": _iso(j["next_start"]),
            }
            for j in jobs
        ],
    }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds")


async def _redis(state: AppState) -> dict[str, Any]:
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        await state.redis.ping()
    return {"status": "up"}


async def _kafka(state: AppState) -> dict[str, Any]:
    kafka = state.settings.kafka
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        lag = await consumer_group_lag(kafka, GPS_POSITIONS, kafka.enrichment_group)
    return {
        "status": "up" if state.publisher.ready else "down",
        "producer": "connected" if state.publisher.ready else "disconnected",
        "workerLag": {"total": sum(lag.values()), "partitions": lag},
    }


async def _probe(name: str, probe: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await probe
        return result
    except Exception as exc:  # a probe's failure is the answer, not an error
        return {"status": "down", "error": type(exc).__name__}


async def check_all(state: AppState) -> dict[str, dict[str, Any]]:
    pg, rd, kf = await asyncio.gather(
        _probe("postgres", _postgres(state)),
        _probe("redis", _redis(state)),
        _probe("kafka", _kafka(state)),
    )
    return {"postgres": pg, "redis": rd, "kafka": kf}


async def _cdc(state: AppState) -> dict[str, Any]:
    """The CDC section: overall lag status (seed thresholds) and each table's."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S * 2):
            async with state.pool.acquire() as conn:
                snap = await lag_snapshot(conn, state.settings)
    except Exception as exc:  # a probe's failure is the answer, not an error
        return {"status": "unknown", "error": type(exc).__name__}
    return {
        "status": snap["status"],
        "maxLagMs": snap["totals"]["maxLagMs"],
        "kafkaLag": snap["totals"]["kafkaLag"],
        "tables": {
            t["table"]: {"status": t["status"], "lagMs": t["lagMs"]} for t in snap["tables"]
        },
    }


@router.get("")
async def health(state: StateDep) -> OrjsonResponse:
    """Overall status; 200 even when degraded so monitoring can read the details."""
    services = await check_all(state)
    # not a readiness matter (positions are still accepted), but an operator's
    services["timescale"] = await _probe("timescale", _timescale(state))
    up = all(s["status"] in ("up", "disabled") for s in services.values())
    return OrjsonResponse(
        {
            "status": "ok" if up else "degraded",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "services": {name: s["status"] for name, s in services.items()},
            "details": services,
            "cdc": await _cdc(state),
            # the seed's block: this process's live gateway (each api process has its own)
            "websocket": (
                state.live.seed_stats()
                if state.live is not None
                else {"connectedClients": 0, "activeRooms": 0}
            ),
        }
    )


@router.get("/ready")
async def ready(state: StateDep) -> OrjsonResponse:
    """200 when positions can be accepted and read, 503 otherwise (for load balancers)."""
    services = await check_all(state)
    up = all(s["status"] == "up" for s in services.values())
    return OrjsonResponse(
        {"ready": up, "services": {name: s["status"] for name, s in services.items()}},
        200 if up else 503,
    )
