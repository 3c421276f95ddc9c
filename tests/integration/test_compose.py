"""docker-compose.yml stays valid and consistent with the code it deploys.

Only the docker CLI with its compose plugin is needed (`docker compose config` renders the
file without talking to an engine); nothing is built or started. A machine without docker
fails here on purpose: the file would otherwise rot unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from api.main import check_secrets
from infrastructure.kafka import TOPICS
from infrastructure.settings import EXAMPLE_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
TEST_JWT_SECRET = "compose-test-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TEST_TRACCAR_API_KEY = "compose-test-traccar-key-5d2c7e"
# Compose has no default for any password either (the api refuses the repository's).
TEST_PASSWORDS = {
    name: f"compose-test-{name.lower().replace('_', '-')}"
    for name in (
        "POSTGRES_PASSWORD",
        "MYSQL_PASSWORD",
        "MYSQL_ROOT_PASSWORD",
        "DEBEZIUM_DB_PASSWORD",
        "REDIS_PASSWORD",
    )
}

EXPECTED_SERVICES = {
    "timescaledb",
    "redis",
    "kafka",
    "kafka-init",
    "connect",
    "connect-register",
    "mysql",
    "migrate",
    "api",
    "worker",
    "cdc",
    "maintain",
    "traccar",
    "prometheus",
    "grafana",
}
# The same catalogue the local stack creates (infrastructure/kafka.py): name -> partitions.
EXPECTED_TOPICS = {spec.name: spec.partitions for spec in TOPICS}
CDC_TABLES = ("accounts", "customers", "products", "orders", "users")


def docker_compose_cli() -> list[str]:
    """Return the command that runs docker compose v2, or fail the test saying what is missing."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail(
            "the `docker` CLI is not installed: tests/integration/test_compose.py validates "
            "docker-compose.yml with `docker compose config` (no engine needed). Install the "
            "docker client and its compose v2 plugin.",
            pytrace=False,
        )
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        pytest.fail(
            "`docker compose` does not work: the compose v2 plugin is missing "
            "(~/.docker/cli-plugins/docker-compose or /usr/libexec/docker/cli-plugins/). "
            f"docker said: {(probe.stderr or probe.stdout).strip()}",
            pytrace=False,
        )
    return [docker, "compose"]


def docker_compose(
    *args: str,
    jwt_secret: str | None = TEST_JWT_SECRET,
    traccar_key: str | None = TEST_TRACCAR_API_KEY,
    without: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `docker compose -f docker-compose.yml ARGS` in a clean, reproducible environment
    (``without``: leave that one of TEST_PASSWORDS out)."""
    # Only what the CLI needs: no developer .env file, no stray POSTGRES_PASSWORD etc.
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_CONFIG"}}
    env.update({k: v for k, v in TEST_PASSWORDS.items() if k != without})
    if jwt_secret is not None:
        env["JWT_SECRET"] = jwt_secret
    if traccar_key is not None:
        env["TRACCAR_API_KEY"] = traccar_key
    command = [*docker_compose_cli(), "--env-file", os.devnull, "-f", str(COMPOSE_FILE), *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The fully interpolated compose model, as `docker compose config --format json` has it."""
    result = docker_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_file_is_valid() -> None:
    result = docker_compose("config", "--quiet")
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"


def test_compose_refuses_to_run_without_a_jwt_secret() -> None:
    result = docker_compose("config", "--quiet", jwt_secret=None)
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_compose_refuses_to_run_without_a_traccar_key() -> None:
    result = docker_compose("config", "--quiet", traccar_key=None)
    assert result.returncode != 0
    assert "TRACCAR_API_KEY" in result.stderr


@pytest.mark.parametrize("variable", sorted(TEST_PASSWORDS))
def test_compose_refuses_to_run_without_each_password(variable: str) -> None:
    result = docker_compose("config", "--quiet", without=variable)
    assert result.returncode != 0
    assert variable in result.stderr


def test_redis_requires_its_password(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == TEST_PASSWORDS["REDIS_PASSWORD"]
    # redis-cli in the healthcheck authenticates with REDISCLI_AUTH
    assert redis["environment"]["REDISCLI_AUTH"] == TEST_PASSWORDS["REDIS_PASSWORD"]


def test_expected_services(config: dict[str, Any]) -> None:
    assert EXPECTED_SERVICES <= set(config["services"])


def test_api_publishes_http_and_osmand_ports(config: dict[str, Any]) -> None:
    published = {
        (int(p["target"]), str(p.get("published"))) for p in config["services"]["api"]["ports"]
    }
    assert (8000, "8000") in published
    assert (5055, "5055") in published


def test_fleetpulse_processes_share_one_image_and_run_their_command(
    config: dict[str, Any],
) -> None:
    services = config["services"]
    commands = {name: services[name]["command"] for name in ("migrate", "api", "worker", "cdc")}
    assert commands == {
        "migrate": ["fleetpulse", "migrate"],
        "api": ["fleetpulse", "api"],
        "worker": ["fleetpulse", "worker"],
        "cdc": ["fleetpulse", "cdc"],
    }
    assert len({services[name]["image"] for name in commands}) == 1
    assert services["api"]["build"]["dockerfile"] == "Dockerfile"
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("api", "worker", "cdc"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"


def test_data_services_have_healthchecks(config: dict[str, Any]) -> None:
    for name in ("timescaledb", "redis", "kafka", "mysql", "connect", "api"):
        assert config["services"][name].get("healthcheck", {}).get("test"), name


def test_upstream_images(config: dict[str, Any]) -> None:
    images = {name: svc.get("image", "") for name, svc in config["services"].items()}
    assert images["timescaledb"].startswith("timescale/timescaledb-ha:pg17")
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", images["kafka"])
    assert images["kafka-init"] == images["kafka"]
    assert re.fullmatch(r"(quay\.io/)?debezium/connect:3\.[\d.]+(\.Final)?", images["connect"])
    assert images["mysql"].startswith("mysql:8")
    assert images["redis"] == "redis:7-alpine"
    assert images["traccar"] == "traccar/traccar:6.5"


def test_kafka_init_creates_every_topic_with_its_partitions(config: dict[str, Any]) -> None:
    script = " ".join(config["services"]["kafka-init"]["command"])
    created = {
        topic: int(partitions)
        for topic, partitions in re.findall(
            r"--create --if-not-exists .*?--topic (\S+) --partitions (\d+)", script
        )
    }
    assert created == EXPECTED_TOPICS
    assert created["gps.positions"] == 6


def test_kafka_is_reachable_as_kafka_9092(config: dict[str, Any]) -> None:
    env = config["services"]["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"


def _fleetpulse_env(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """service -> its FLEETPULSE_* variables."""
    return {
        name: {
            k: str(v)
            for k, v in (svc.get("environment") or {}).items()
            if k.startswith("FLEETPULSE_")
        }
        for name, svc in config["services"].items()
    }


def test_every_fleetpulse_variable_names_a_settings_field(config: dict[str, Any]) -> None:
    settings = Settings(_env_file=None)
    seen = 0
    for service, variables in _fleetpulse_env(config).items():
        for variable in variables:
            node: Any = settings
            for part in variable.removeprefix("FLEETPULSE_").lower().split("__"):
                assert isinstance(node, BaseModel) and part in type(node).model_fields, (
                    f"{service}: {variable} is not a field of infrastructure.settings.Settings"
                )
                node = getattr(node, part)
            assert not isinstance(node, BaseModel), f"{service}: {variable} names a section"
            seen += 1
    assert seen > 0


def test_settings_read_from_the_compose_environment(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("FLEETPULSE_"):
            monkeypatch.delenv(key)
    variables = _fleetpulse_env(config)["api"]
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)

    for variable, raw in variables.items():
        node: Any = settings
        for part in variable.removeprefix("FLEETPULSE_").lower().split("__"):
            node = getattr(node, part)
        value = node.get_secret_value() if isinstance(node, SecretStr) else node
        assert str(value) == raw, variable
    assert settings.environment == "production"
    assert settings.pg.host == "timescaledb" and settings.pg.port == 5432
    assert settings.redis.host == "redis"
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.mariadb.host == "mysql" and settings.mariadb.database == "core_business"
    assert settings.auth.jwt_secret.get_secret_value() != EXAMPLE_JWT_SECRET
    assert settings.auth.traccar_api_key is not None
    assert settings.auth.traccar_api_key.get_secret_value() == TEST_TRACCAR_API_KEY
    assert settings.redis.password.get_secret_value() == TEST_PASSWORDS["REDIS_PASSWORD"]
    assert settings.pg.password.get_secret_value() == TEST_PASSWORDS["POSTGRES_PASSWORD"]
    assert settings.mariadb.password.get_secret_value() == TEST_PASSWORDS["MYSQL_PASSWORD"]
    check_secrets(settings)  # the api starts with compose's configuration
    # All FleetPulse processes get the same configuration.
    for name in ("migrate", "worker", "cdc", "maintain"):
        assert _fleetpulse_env(config)[name] == variables
    # metrics on the compose network, where Prometheus scrapes them
    assert settings.metrics.host == "0.0.0.0"


def test_bind_mounts_exist(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} is missing"


def test_debezium_connector_routes_tables_to_the_cdc_topics() -> None:
    spec = json.loads((ROOT / "deploy/debezium/mysql-connector.json").read_text())
    config = spec["config"]
    assert config["connector.class"] == "io.debezium.connector.mysql.MySqlConnector"
    assert config["database.include.list"] == "core_business"
    tables = config["table.include.list"].split(",")
    assert tables == [f"core_business.{t}" for t in CDC_TABLES]
    route = re.compile(config["transforms.route.regex"])
    replacement = config["transforms.route.replacement"].replace("$1", r"\1")
    topics = set()
    for table in tables:
        source_topic = f"{config['topic.prefix']}.{table}"
        assert route.fullmatch(source_topic), source_topic  # RegexRouter uses matches()
        topics.add(route.sub(replacement, source_topic))
    assert topics == {f"cdc.{t}" for t in CDC_TABLES}
    assert topics <= set(EXPECTED_TOPICS)


def test_traccar_forwards_positions_and_events_to_the_api(config: dict[str, Any]) -> None:
    root = ET.parse(ROOT / "deploy/traccar/traccar.xml").getroot()
    entries = {entry.get("key"): (entry.text or "") for entry in root.iter("entry")}
    assert entries["forward.type"] == "json"
    assert entries["forward.url"] == "http://api:8000/api/traccar/positions"
    assert entries["event.forward.url"] == "http://api:8000/api/traccar/events"
    assert entries["forward.header"].startswith("X-API-Key:")
    assert entries["forward.retry.enable"] == "true"
    # Compose overrides the header through Traccar's environment-variable support, with the
    # same key the api accepts.
    traccar_env = config["services"]["traccar"]["environment"]
    api_key = config["services"]["api"]["environment"]["FLEETPULSE_AUTH__TRACCAR_API_KEY"]
    assert traccar_env["CONFIG_USE_ENVIRONMENT_VARIABLES"] == "true"
    assert traccar_env["FORWARD_HEADER"] == f"X-API-Key: {api_key}"
    assert traccar_env["EVENT_FORWARD_HEADER"] == f"X-API-Key: {api_key}"


PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    return {v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == "bind"}


def test_prometheus_scrapes_every_fleetpulse_process_on_its_metrics_port(
    config: dict[str, Any],
) -> None:
    import yaml

    services = config["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    mounts = _mounts(services["prometheus"])
    assert Path(mounts["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_DIR / "prometheus.yml"
    assert Path(mounts["/etc/prometheus/alerts.yml"]) == PROMETHEUS_DIR / "alerts.yml"
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets: dict[str, set[str]] = {}
    for job in scrape["scrape_configs"]:
        found = {t for c in job.get("static_configs", []) for t in c["targets"]}
        found |= {f"{n}:{c['port']}" for c in job.get("dns_sd_configs", []) for n in c["names"]}
        targets[job["job_name"]] = found
    ports = Settings(_env_file=None).metrics
    assert targets == {
        "fleetpulse-api": {f"api:{ports.api_port}"},
        "fleetpulse-worker": {f"worker:{ports.worker_port}"},  # one target per replica
        "fleetpulse-cdc": {f"cdc:{ports.cdc_port}"},
        "fleetpulse-maintain": {f"maintain:{ports.maintain_port}"},
    }
    for job in targets:  # every scraped name is a FleetPulse service of this file
        assert job.removeprefix("fleetpulse-") in services
    assert services["maintain"]["command"] == ["fleetpulse", "maintain", "--loop"]
    # metrics stay off the host's network: only Prometheus and Grafana publish a port, on
    # 127.0.0.1
    for name in ("prometheus", "grafana"):
        assert {p.get("host_ip") for p in services[name]["ports"]} == {"127.0.0.1"}, name


def test_grafana_provisions_the_dashboard_on_the_prometheus_data_source(
    config: dict[str, Any],
) -> None:
    import yaml

    grafana = config["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    mounts = _mounts(grafana)
    assert Path(mounts["/etc/grafana/provisioning"]) == GRAFANA_DIR / "provisioning"
    assert Path(mounts["/var/lib/grafana/dashboards"]) == GRAFANA_DIR / "dashboards"
    sources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [(d["type"], d["url"]) for d in sources] == [("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "fleetpulse.yml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "fleetpulse.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:  # every panel reads the provisioned source and says what it shows
        assert panel["datasource"]["uid"] == sources[0]["uid"], panel["title"]
        assert panel["description"] and panel["targets"], panel["title"]
        assert all(t["expr"] for t in panel["targets"]), panel["title"]


def promtool() -> str:
    """Prometheus' own checker, or fail the test saying how to get it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "`promtool` is not installed: tests/integration/test_compose.py checks the "
            "Prometheus config and alert rules with it (make promtool: Debian's `prometheus`).",
            pytrace=False,
        )
    return path


def test_prometheus_config_and_alert_rules_are_valid() -> None:
    tool = promtool()
    checks = (
        ["check", "config", "--syntax-only", "prometheus.yml"],
        ["check", "config", "prometheus.local.yml"],  # loads alerts.yml beside it
        ["check", "rules", "alerts.yml"],
    )
    for args in checks:
        done = subprocess.run(
            [tool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    """deploy/prometheus/alerts.test.yml: promtool evaluates the rules over made-up series."""
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    import yaml

    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    tested = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    defined = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert fired == defined  # every rule is shown firing by a case, and quiet before it
    quiet = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert quiet == defined
