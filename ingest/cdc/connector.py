"""The Debezium connector of the local stack: its config from the settings, idempotent PUT.

``fleetpulse cdc register`` = load ``deploy/mysql/01-core_business.sql`` into the configured
MariaDB database (idempotent: CREATE TABLE IF NOT EXISTS, demo rows ON DUPLICATE KEY UPDATE
id = id), create the Kafka topics, then ``PUT /connectors/<name>/config``, which creates the
connector or replaces its config. Everything a test run must isolate carries the Kafka topic
prefix: the connector name, Debezium's ``topic.prefix``, the schema-history topic and the
RegexRouter's replacement (``<prefix>cdc.<table>``); the replica server id is derived from it.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
import zlib
from typing import Any

from infrastructure.kafka import CDC_TABLES, ensure_topics
from infrastructure.mariadb import load_core_business
from infrastructure.settings import Settings
from ingest.errors import IngestError

CONNECTOR_CLASS = "io.debezium.connector.mariadb.MariaDbConnector"


class ConnectError(IngestError, RuntimeError):
    """Kafka Connect refused or could not be reached."""

    code = "connect_error"


def connector_name(settings: Settings) -> str:
    """Return the connector's name (the Kafka topic prefix + the configured name)."""
    return f"{settings.kafka.topic_prefix}{settings.cdc.connector_name}"


def server_id(settings: Settings) -> int:
    """Return the replica id toward MariaDB: the configured one, shifted per topic prefix."""
    prefix = settings.kafka.topic_prefix
    if not prefix:
        return settings.cdc.server_id
    return settings.cdc.server_id + 1 + zlib.crc32(prefix.encode()) % 1_000_000


def connector_config(settings: Settings) -> dict[str, str]:
    """Return the Debezium MariaDB connector's config for these settings."""
    my, kafka = settings.mariadb, settings.kafka
    db = my.database
    prefix = kafka.topic_prefix
    return {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": my.host,
        "database.port": str(my.port),
        "database.user": my.user,
        "database.password": my.password.get_secret_value(),
        "database.server.id": str(server_id(settings)),
        "database.ssl.mode": "disable",
        "topic.prefix": f"{prefix}fleetpulse",
        "database.include.list": db,
        "table.include.list": ",".join(f"{db}.{t}" for t in CDC_TABLES),
        "include.schema.changes": "false",
        "schema.history.internal.kafka.bootstrap.servers": kafka.bootstrap_servers,
        "schema.history.internal.kafka.topic": f"{prefix}schema-history.{db}",
        "snapshot.mode": "initial",
        "decimal.handling.mode": "string",
        "time.precision.mode": "connect",
        "tombstones.on.delete": "false",
        # Hand batches over quickly: latency, not throughput, matters for a cache.
        "poll.interval.ms": "50",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "3",
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": rf".*\.{re.escape(db)}\.([^.]+)",
        "transforms.route.replacement": f"{prefix}cdc.$1",
    }


def _request(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return int(resp.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectError(f"Kafka Connect at {url} is not reachable: {exc}") from exc


def put_connector(settings: Settings, *, wait_s: float = 60.0) -> int:
    """PUT the connector config (create or update); retry while Connect rebalances.

    Returns the HTTP status: 201 created, 200 updated (or unchanged).
    """
    import time

    url = f"{settings.cdc.connect_url.rstrip('/')}/connectors/{connector_name(settings)}/config"
    deadline = time.monotonic() + wait_s
    while True:
        status, body = _request("PUT", url, connector_config(settings))
        if status in (200, 201):
            return status
        # 409: rebalance in progress; 5xx: the worker is still starting.
        if (status == 409 or status >= 500) and time.monotonic() < deadline:
            time.sleep(1.0)
            continue
        raise ConnectError(f"connector {connector_name(settings)} rejected (HTTP {status}): {body}")


def connector_status(settings: Settings) -> dict[str, Any] | None:
    """Return the connector's status (state of the connector and its tasks), None if absent."""
    url = f"{settings.cdc.connect_url.rstrip('/')}/connectors/{connector_name(settings)}/status"
    status, body = _request("GET", url, timeout=5.0)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise ConnectError(f"connector status: HTTP {status}: {body}")
    return body


def delete_connector(settings: Settings) -> bool:
    """Delete the connector; return whether it existed. Its Kafka offsets stay."""
    url = f"{settings.cdc.connect_url.rstrip('/')}/connectors/{connector_name(settings)}"
    status, body = _request("DELETE", url)
    if status == 404:
        return False
    if status not in (200, 204):
        raise ConnectError(f"delete connector: HTTP {status}: {body}")
    return True


async def register(settings: Settings, *, load_schema: bool = True) -> int:
    """Prepare the source database and the topics, then register the connector; return the
    HTTP status of the PUT."""
    if load_schema:
        await load_core_business(settings.mariadb)
    await ensure_topics(settings.kafka)
    return await asyncio.to_thread(put_connector, settings)
