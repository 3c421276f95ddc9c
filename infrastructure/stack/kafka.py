"""Apache Kafka in KRaft mode, one node (broker + controller), jars from Maven Central.

Nothing is downloaded from the Apache site: ``kafka-pom.xml`` names the broker's artifacts and
Maven copies them (with their dependencies) to ``.stack/kafka/libs``.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import uuid
from pathlib import Path

from infrastructure.stack._maven import java, java_maven_requirements, resolve_jars, stamp_matches
from infrastructure.stack._proc import (
    process_alive,
    read_pid,
    run,
    spawn_detached,
    tcp_open,
    terminate,
    write_if_changed,
)
from infrastructure.stack._service import AptRequirement, Service

POM = Path(__file__).with_name("kafka-pom.xml")
NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"


def kafka_broker_ids(host: str, port: int, timeout: float = 3.0) -> list[int]:
    """Send a Metadata request (v4, all topics) to a broker and return the broker ids it lists.

    A broker answers with its registered, unfenced brokers only once it can serve clients.
    Raises OSError (or struct.error on a malformed answer) when it cannot.
    """
    client_id = b"fleetpulse-stack"
    api_key, api_version, correlation_id = 3, 4, 7
    body = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i?", -1, False)  # topics: null (all), allow_auto_topic_creation
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    got_correlation, _throttle_ms, count = struct.unpack_from(">iii", data, 0)
    if got_correlation != correlation_id:
        raise OSError("unexpected correlation id in Metadata response")
    offset = 12
    ids = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", data, offset)
        (host_len,) = struct.unpack_from(">h", data, offset + 4)
        offset += 6 + host_len + 4  # node id, host string, port
        (rack_len,) = struct.unpack_from(">h", data, offset)
        offset += 2 + max(rack_len, 0)
        ids.append(node_id)
    return ids


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


def random_cluster_id() -> str:
    """Return a new cluster id as Kafka writes them: a UUID in URL-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids these too (CLI parsing)
            return text


class Kafka(Service):
    name = "kafka"
    ready_timeout_s = 90.0
    stop_timeout_s = 60.0

    @property
    def host(self) -> str:
        first = self.settings.kafka.bootstrap_servers.split(",")[0].strip()
        return first.rsplit(":", 1)[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        first = self.settings.kafka.bootstrap_servers.split(",")[0].strip()
        return int(first.rsplit(":", 1)[1]) if ":" in first else 9092

    @property
    def controller_port(self) -> int:
        return self.settings.stack.kafka_controller_port

    @property
    def log(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def pidfile(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def server_properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.dir / "log4j.properties"

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        return java_maven_requirements()

    def _libs_stamp(self) -> str:
        version = self.settings.stack.kafka_version
        return hashlib.sha256(POM.read_bytes() + version.encode()).hexdigest()

    def jars_present(self) -> bool:
        """Return whether libs/ holds the jars of the configured version and of this pom."""
        version = self.settings.stack.kafka_version
        return (
            stamp_matches(self.libs, self._libs_stamp())
            and (self.libs / f"kafka_2.13-{version}.jar").exists()
        )

    def install_extra(self) -> None:
        if self.jars_present():
            return
        version = self.settings.stack.kafka_version
        resolve_jars(
            self.name,
            pom=POM,
            target=self.libs,
            properties=[f"-Dkafka.version={version}"],
            expect=f"kafka_2.13-{version}.jar",
            stamp=self._libs_stamp(),
            workdir=self.dir,
        )

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid is not None and process_alive(pid, MAIN_CLASS) else None

    def probe(self) -> bool:
        if not tcp_open(self.host, self.port, 0.5):
            return False
        try:
            return NODE_ID in kafka_broker_ids(self.host, self.port)
        except (OSError, OverflowError, struct.error):
            return False

    def launch(self) -> None:
        if not self.jars_present():
            self.install_extra()
        java_path = java(self.name, self.log)
        self.data.mkdir(parents=True, exist_ok=True)
        write_if_changed(self.server_properties, self._server_properties())
        write_if_changed(self.log4j_properties, self._log4j_properties())
        classpath = f"{self.libs}/*"
        logging_opt = f"-Dlog4j.configuration=file:{self.log4j_properties}"
        if not (self.data / "meta.properties").exists():
            cluster_file = self.dir / "cluster.id"
            if not cluster_file.exists():
                cluster_file.write_text(random_cluster_id() + "\n")
            cluster_id = cluster_file.read_text().strip()
            run(
                self.name,
                [
                    java_path,
                    "-Xmx256m",
                    logging_opt,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(self.server_properties),
                    "--ignore-formatted",
                ],
                cwd=self.dir,
                log=self.log,
                timeout=120,
            )
        heap = self.settings.stack.kafka_heap_max
        spawn_detached(
            self.name,
            [
                java_path,
                "-Xms256m",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-XX:MaxInlineLevel=15",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                logging_opt,
                f"-Dkafka.logs.dir={self.dir}",
                "-cp",
                classpath,
                MAIN_CLASS,
                str(self.server_properties),
            ],
            log=self.log,
            pidfile=self.pidfile,
            cwd=self.dir,
        )

    def _server_properties(self) -> str:
        host, port, controller = self.host, self.port, self.controller_port
        return f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.voters={NODE_ID}@{host}:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={self.data}
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Topics are created explicitly (by the app's setup and by tests), never by a typo.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Two cores: a few threads are plenty.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.hours=168
log.segment.bytes=268435456
log.retention.check.interval.ms=300000
"""

    def _log4j_properties(self) -> str:
        return f"""\
# Written by infrastructure/stack on every start. Appends to kafka.log, as stdout does.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={self.log}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.metadata.migration=WARN
"""

    def shutdown(self, pid: int) -> None:
        # SIGTERM runs Kafka's shutdown hook: a controlled shutdown that closes the logs
        # cleanly, so the next start skips log recovery.
        terminate(pid, MAIN_CLASS, self.stop_timeout_s)
        self.pidfile.unlink(missing_ok=True)
