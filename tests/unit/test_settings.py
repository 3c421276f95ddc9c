"""Settings: .env.example documents every variable; public secrets are refused outside tests."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from api.main import InsecureConfiguration, check_secrets, create_app
from infrastructure.secrets import (
    PUBLIC_SECRETS,
    ensure_local_secrets,
    is_public,
    public_passwords,
    with_local_secrets,
)
from infrastructure.settings import (
    EXAMPLE_JWT_SECRET,
    REPOSITORY_DB_PASSWORD,
    AuthSettings,
    PostgresSettings,
    RedisSettings,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]


def _env_names(model: BaseModel, prefix: str) -> set[str]:
    names = set()
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            names |= _env_names(value, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_env_example_documents_exactly_the_settings() -> None:
    documented = set(
        re.findall(r"^(FLEETPULSE_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert documented == _env_names(Settings(), "FLEETPULSE_")


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETPULSE_PG__PORT", "6543")
    monkeypatch.setenv("FLEETPULSE_KAFKA__TOPIC_PREFIX", "x.")
    s = Settings()
    assert s.pg.port == 6543
    assert s.kafka.topic("gps.positions") == "x.gps.positions"


def _private_passwords() -> dict[str, Any]:
    """Settings sections with random database and Redis passwords (none of the repository's)."""
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    return {
        name: getattr(base, name).model_copy(
            update={"password": SecretStr(secrets.token_urlsafe(24))}
        )
        for name in ("pg", "mariadb", "redis")
    }


def test_outside_the_tests_the_api_refuses_every_public_secret(tmp_path: Path) -> None:
    """Anyone can read the repository: its example JWT secret would let them mint admin
    tokens, its Traccar keys post positions, its database password log in to PostgreSQL,
    MariaDB or Redis. Only the test suite may run with them."""
    strong = SecretStr(secrets.token_hex(32))
    key = SecretStr(secrets.token_urlsafe(24))
    private = _private_passwords()
    for env in ("development", "production"):
        with pytest.raises(InsecureConfiguration, match="JWT"):
            create_app(Settings(_env_file=None, environment=env))  # type: ignore[call-arg]
        for bad in ("short", EXAMPLE_JWT_SECRET):
            auth = AuthSettings(jwt_secret=SecretStr(bad), traccar_api_key=key)
            with pytest.raises(InsecureConfiguration, match="JWT"):
                check_secrets(Settings(_env_file=None, environment=env, auth=auth, **private))  # type: ignore[call-arg]
        for public in sorted(PUBLIC_SECRETS - {EXAMPLE_JWT_SECRET}) + [""]:
            auth = AuthSettings(jwt_secret=strong, traccar_api_key=SecretStr(public))
            with pytest.raises(InsecureConfiguration, match="Traccar"):
                check_secrets(Settings(_env_file=None, environment=env, auth=auth, **private))  # type: ignore[call-arg]
        for shared in (key, None):  # None: per-tenant keys only
            good = AuthSettings(jwt_secret=strong, traccar_api_key=shared)
            check_secrets(Settings(_env_file=None, environment=env, auth=good, **private))  # type: ignore[call-arg]
        good = AuthSettings(jwt_secret=strong, traccar_api_key=key)
        # the repository's default database/Redis password, each alone; Redis without one
        for section, variable in (
            ("pg", "FLEETPULSE_PG__PASSWORD"),
            ("mariadb", "FLEETPULSE_MARIADB__PASSWORD"),
            ("redis", "FLEETPULSE_REDIS__PASSWORD"),
        ):
            values = [REPOSITORY_DB_PASSWORD, *(["", "dbz"] if section == "redis" else ["dbz"])]
            for value in values:
                one = getattr(Settings(_env_file=None), section)  # type: ignore[call-arg]
                bad_section = one.model_copy(update={"password": SecretStr(value)})
                settings = Settings(  # type: ignore[call-arg]
                    _env_file=None, environment=env, auth=good, **{**private, section: bad_section}
                )
                with pytest.raises(InsecureConfiguration, match=variable):
                    check_secrets(settings)
                assert public_passwords(settings) == [variable]
    check_secrets(Settings(_env_file=None, environment="test"))  # type: ignore[call-arg]


def test_passwords_are_quoted_in_urls() -> None:
    odd = "p@ss:/w?rd#%"
    pg = PostgresSettings(password=SecretStr(odd))
    assert "p%40ss%3A%2Fw%3Frd%23%25@127.0.0.1:5433/" in pg.dsn()
    assert RedisSettings(password=SecretStr(odd)).url() == (
        "redis://:p%40ss%3A%2Fw%3Frd%23%25@127.0.0.1:6380/0"
    )
    assert RedisSettings(password=SecretStr("")).url() == "redis://127.0.0.1:6380/0"


def test_local_secrets_are_random_private_and_written_once(tmp_path: Path) -> None:
    path = tmp_path / ".secrets.env"
    names = [
        "FLEETPULSE_AUTH__JWT_SECRET",
        "FLEETPULSE_AUTH__TRACCAR_API_KEY",
        "FLEETPULSE_PG__PASSWORD",
        "FLEETPULSE_MARIADB__PASSWORD",
        "FLEETPULSE_REDIS__PASSWORD",
    ]
    assert ensure_local_secrets(path) == names
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    assert ensure_local_secrets(path) == [] and path.read_text() == first  # never rotated
    other = tmp_path / "other.env"
    ensure_local_secrets(other)
    assert other.read_text() != first
    loaded = Settings(_env_file=path)  # type: ignore[call-arg]
    check_secrets(loaded.model_copy(update={"environment": "development"}))
    assert not is_public(loaded.auth.jwt_secret.get_secret_value())
    values = {
        loaded.pg.password.get_secret_value(),
        loaded.mariadb.password.get_secret_value(),
        loaded.redis.password.get_secret_value(),
    }
    assert len(values) == 3 and not any(is_public(v) or len(v) < 24 for v in values)


def test_a_secrets_file_from_before_the_passwords_gets_them_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    """An installation whose .secrets.env holds only the JWT secret and the Traccar key (the
    first version) gets database and Redis passwords appended; nothing else changes."""
    path = tmp_path / ".secrets.env"
    old = (
        "# Generated by `fleetpulse stack up` for this installation; keep it private.\n"
        f"FLEETPULSE_AUTH__JWT_SECRET={secrets.token_hex(32)}\n"
        f"FLEETPULSE_AUTH__TRACCAR_API_KEY={secrets.token_urlsafe(24)}"  # no final newline
    )
    path.write_text(old)
    path.chmod(0o600)
    before = Settings(_env_file=path)  # type: ignore[call-arg]
    assert public_passwords(before) == [
        "FLEETPULSE_PG__PASSWORD",
        "FLEETPULSE_MARIADB__PASSWORD",
        "FLEETPULSE_REDIS__PASSWORD",
    ]
    assert ensure_local_secrets(path) == public_passwords(before)
    assert path.read_text().startswith(old + "\n")
    after = Settings(_env_file=path)  # type: ignore[call-arg]
    assert after.auth == before.auth
    assert public_passwords(after) == []
    # Settings read before the passwords were written (the first `stack up` of a clone) get
    # them from the file; passwords set on purpose stay as they are.
    filled = with_local_secrets(before, path)
    assert filled.pg.password == after.pg.password
    assert filled.mariadb.password == after.mariadb.password
    assert filled.redis.password == after.redis.password
    own = before.model_copy(
        update={"pg": before.pg.model_copy(update={"password": SecretStr("operator-chosen")})}
    )
    assert with_local_secrets(own, path).pg.password.get_secret_value() == "operator-chosen"


@pytest.mark.parametrize("command", [["worker"], ["cdc"], ["maintain"], ["run"]])
def test_long_running_commands_refuse_a_public_password(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like the api, the other processes holding the database and Redis passwords refuse to
    start with the repository's (before connecting anywhere)."""
    from api.cli import main

    monkeypatch.setenv("FLEETPULSE_ENVIRONMENT", "development")
    monkeypatch.setenv("FLEETPULSE_AUTH__JWT_SECRET", secrets.token_hex(32))
    monkeypatch.setenv("FLEETPULSE_AUTH__TRACCAR_API_KEY", secrets.token_urlsafe(24))
    monkeypatch.setenv("FLEETPULSE_REDIS__PASSWORD", REPOSITORY_DB_PASSWORD)
    assert main(command) == 2
    assert "FLEETPULSE_REDIS__PASSWORD" in capsys.readouterr().err
