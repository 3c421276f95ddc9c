"""Register (or update) the Debezium connector in Kafka Connect; idempotent, stdlib only.

Used by the one-shot ``connect-register`` service of docker-compose.yml:

    python register_connector.py [mysql-connector.json]

``PUT /connectors/<name>/config`` creates the connector or replaces its config, so running it
again is harmless. Where the database and the broker are comes from the environment, so the
same JSON file serves Compose and other setups: CONNECT_URL, DEBEZIUM_DB_HOST,
DEBEZIUM_DB_PORT, DEBEZIUM_DB_USER, DEBEZIUM_DB_PASSWORD, KAFKA_BOOTSTRAP_SERVERS,
CONNECT_WAIT_S (how long to wait for Kafka Connect, default 180).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger("register_connector")

# environment variable -> connector property it overrides
OVERRIDES = {
    "DEBEZIUM_DB_HOST": "database.hostname",
    "DEBEZIUM_DB_PORT": "database.port",
    "DEBEZIUM_DB_USER": "database.user",
    "DEBEZIUM_DB_PASSWORD": "database.password",
    "KAFKA_BOOTSTRAP_SERVERS": "schema.history.internal.kafka.bootstrap.servers",
}


def connector_config(path: Path, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Return the connector's name and its config with the environment's overrides applied."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    config = dict(spec["config"])
    for var, prop in OVERRIDES.items():
        if env.get(var):
            config[prop] = env[var]
    return spec["name"], config


def put_config(connect_url: str, name: str, config: dict[str, Any]) -> int:
    """PUT the config and return the HTTP status (201 created, 200 updated)."""
    request = urllib.request.Request(
        f"{connect_url.rstrip('/')}/connectors/{name}/config",
        data=json.dumps(config).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def main(argv: list[str]) -> int:
    """Register the connector, retrying while Kafka Connect is not ready yet."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    path = Path(argv[1] if len(argv) > 1 else Path(__file__).with_name("mysql-connector.json"))
    name, config = connector_config(path, dict(os.environ))
    connect_url = os.environ.get("CONNECT_URL", "http://connect:8083")
    deadline = time.monotonic() + float(os.environ.get("CONNECT_WAIT_S", "180"))
    while True:
        try:
            status = put_config(connect_url, name, config)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            # 409: the Connect cluster is rebalancing; anything else 4xx is a bad config.
            if exc.code != 409 and 400 <= exc.code < 500:
                log.error("connector %s rejected (HTTP %s): %s", name, exc.code, body)
                return 1
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(exc)
        else:
            log.info("connector %s registered (HTTP %s) at %s", name, status, connect_url)
            return 0
        if time.monotonic() > deadline:
            log.error("gave up registering %s at %s: %s", name, connect_url, reason)
            return 1
        log.info("Kafka Connect not ready (%s), retrying", reason)
        time.sleep(3)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
