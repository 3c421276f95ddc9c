"""Kafka Connect (one distributed worker) with the Debezium MariaDB connector as a plugin.

Everything comes from Maven Central: ``connect-pom.xml`` resolves the worker (connect-runtime,
connect-json, connect-transforms at the broker's Kafka version) into ``.stack/connect/libs``,
``debezium-pom.xml`` the Debezium MariaDB connector into
``.stack/connect/plugins/debezium-connector-mariadb`` (the worker's ``plugin.path``). The
worker keeps its configs, offsets and statuses in Kafka topics (replication factor 1), so a
restart resumes every connector where it was. REST on ``settings.cdc.connect_url``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from infrastructure.stack._maven import java, java_maven_requirements, resolve_jars, stamp_matches
from infrastructure.stack._proc import (
    StackError,
    process_alive,
    read_pid,
    spawn_detached,
    terminate,
    wait_until,
    write_if_changed,
)
from infrastructure.stack._service import AptRequirement, Service
from infrastructure.stack.kafka import Kafka

RUNTIME_POM = Path(__file__).with_name("connect-pom.xml")
PLUGIN_POM = Path(__file__).with_name("debezium-pom.xml")
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectDistributed"
PLUGIN_DIR = "debezium-connector-mariadb"
GROUP_ID = "fleetpulse-connect"
# Internal topics of the worker (created by the worker itself, replication factor 1).
CONFIG_TOPIC = "_fleetpulse-connect-configs"
OFFSET_TOPIC = "_fleetpulse-connect-offsets"
STATUS_TOPIC = "_fleetpulse-connect-status"
KAFKA_WAIT_S = 120.0
# Hosts under which connectors reach this stack's MariaDB.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

log = logging.getLogger("infrastructure.stack")


def connect_get(url: str, timeout: float = 3.0) -> tuple[int, object]:
    """GET a Kafka Connect REST resource; return (status, decoded JSON body)."""
    return connect_request("GET", url, timeout=timeout)


def connect_request(
    method: str, url: str, body: Any = None, timeout: float = 3.0
) -> tuple[int, object]:
    """Call the Kafka Connect REST API; return (status, decoded JSON body)."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


class Connect(Service):
    name = "connect"
    # Scanning the plugin path and joining the group takes a while on two shared cores.
    ready_timeout_s = 240.0
    stop_timeout_s = 60.0

    @property
    def url(self) -> str:
        return self.settings.cdc.connect_url.rstrip("/")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 8083

    @property
    def log(self) -> Path:
        return self.dir / "connect.log"

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    @property
    def plugins(self) -> Path:
        return self.dir / "plugins"

    @property
    def pidfile(self) -> Path:
        return self.dir / "connect.pid"

    @property
    def worker_properties(self) -> Path:
        return self.dir / "connect-distributed.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.dir / "log4j.properties"

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        return java_maven_requirements()

    def _stamps(self) -> tuple[str, str]:
        stack = self.settings.stack
        runtime = f"connect-runtime {stack.kafka_version}"
        plugin = f"debezium-connector-mariadb {stack.debezium_version}"
        return runtime, plugin

    def jars_present(self) -> bool:
        runtime, plugin = self._stamps()
        return stamp_matches(self.libs, runtime) and stamp_matches(
            self.plugins / PLUGIN_DIR, plugin
        )

    def install_extra(self) -> None:
        runtime, plugin = self._stamps()
        stack = self.settings.stack
        if not stamp_matches(self.libs, runtime):
            resolve_jars(
                self.name,
                pom=RUNTIME_POM,
                target=self.libs,
                properties=[f"-Dkafka.version={stack.kafka_version}"],
                expect=f"connect-runtime-{stack.kafka_version}.jar",
                stamp=runtime,
                workdir=self.dir,
            )
        target = self.plugins / PLUGIN_DIR
        if not stamp_matches(target, plugin):
            resolve_jars(
                self.name,
                pom=PLUGIN_POM,
                target=target,
                properties=[f"-Ddebezium.version={stack.debezium_version}"],
                expect=f"debezium-connector-mariadb-{stack.debezium_version}.jar",
                stamp=plugin,
                workdir=self.dir,
            )

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid is not None and process_alive(pid, MAIN_CLASS) else None

    def probe(self) -> bool:
        """Ready when the worker's herder answers (GET /connectors is 200, not 503/409)."""
        try:
            status, _ = connect_get(f"{self.url}/connectors", timeout=2.0)
        except (OSError, ValueError):
            return False
        return status == 200

    def launch(self) -> None:
        if not self.jars_present():
            self.install_extra()
        java_path = java(self.name, self.log)
        # The worker exits at once when no broker answers; `up` starts services in parallel.
        kafka = Kafka(self.settings)
        if not wait_until(kafka.probe, KAFKA_WAIT_S, interval=0.5):
            raise StackError(self.name, f"kafka not ready after {KAFKA_WAIT_S:.0f} s", self.log)
        write_if_changed(self.worker_properties, self._worker_properties())
        write_if_changed(self.log4j_properties, self._log4j_properties())
        heap = self.settings.stack.connect_heap_max
        spawn_detached(
            self.name,
            [
                java_path,
                "-Xms128m",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                # Two shared cores: no tiered compilation storm at start, fewer GC threads.
                "-XX:ParallelGCThreads=1",
                "-XX:ConcGCThreads=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.log4j_properties}",
                "-cp",
                f"{self.libs}/*",
                MAIN_CLASS,
                str(self.worker_properties),
            ],
            log=self.log,
            pidfile=self.pidfile,
            cwd=self.dir,
        )

    def _worker_properties(self) -> str:
        return f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
bootstrap.servers={self.settings.kafka.bootstrap_servers}
group.id={GROUP_ID}
listeners=http://{self.host}:{self.port}
rest.advertised.host.name={self.host}
rest.advertised.port={self.port}
plugin.path={self.plugins}
# JSON without the schema envelope: the cdc consumer reads plain Debezium envelopes.
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
config.storage.topic={CONFIG_TOPIC}
offset.storage.topic={OFFSET_TOPIC}
status.storage.topic={STATUS_TOPIC}
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=1
# Source offsets (binlog positions) flushed every second: a restart replays little.
offset.flush.interval.ms=1000
# Connectors create their own topics (the broker does not auto-create).
topic.creation.enable=true
"""

    def _log4j_properties(self) -> str:
        return f"""\
# Written by infrastructure/stack on every start. Appends to connect.log, as stdout does.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={self.log}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.reflections=ERROR
log4j.logger.org.eclipse.jetty=WARN
"""

    def update_connector_passwords(self, wait_s: float = 60.0) -> list[str]:
        """Give every connector that reads this stack's MariaDB as the app's account the
        account's current password, and restart its failed tasks; return their names.

        Connectors keep their config (password included) in Kafka: after ``up`` changed the
        MariaDB password, a connector registered before would fail at its next login.
        """
        my = self.settings.mariadb
        password = my.password.get_secret_value()
        status, names = connect_get(f"{self.url}/connectors", timeout=10.0)
        if status != 200 or not isinstance(names, list):
            raise StackError(self.name, f"GET /connectors: HTTP {status}: {names}", self.log)
        updated: list[str] = []
        for name in names:
            base = f"{self.url}/connectors/{quote(str(name), safe='')}"
            status, config = connect_get(f"{base}/config", timeout=10.0)
            if status != 200 or not isinstance(config, dict):
                continue  # deleted meanwhile
            if (
                config.get("database.hostname") not in LOCAL_HOSTS
                or config.get("database.port") != str(my.port)
                or config.get("database.user") != my.user
                or config.get("database.password") == password
            ):
                continue
            log.info("giving connector %s the MariaDB account's new password", name)
            self._put_config(base, {**config, "database.password": password}, wait_s)
            # A task that failed to log in with the old password stays failed by itself.
            connect_request("POST", f"{base}/restart?includeTasks=true&onlyFailed=true", {})
            updated.append(str(name))
        return updated

    def _put_config(self, base: str, config: dict[str, Any], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            status, body = connect_request("PUT", f"{base}/config", config, timeout=30.0)
            if status in (200, 201):
                return
            # 409: a rebalance is in progress; retry until it is over.
            if status == 409 and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise StackError(self.name, f"PUT {base}/config: HTTP {status}: {body}", self.log)

    def shutdown(self, pid: int) -> None:
        # SIGTERM stops the connectors' tasks and flushes their offsets.
        terminate(pid, MAIN_CLASS, self.stop_timeout_s)
        self.pidfile.unlink(missing_ok=True)
