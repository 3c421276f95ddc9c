"""Settings: .env.example documents every variable; public secrets are refused outside tests."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from api.main import InsecureConfiguration, check_secrets, create_app
from infrastructure.secrets import PUBLIC_SECRETS, ensure_local_secrets, is_public
from infrastructure.settings import EXAMPLE_JWT_SECRET, AuthSettings, Settings

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


def test_outside_the_tests_the_api_refuses_every_public_secret(tmp_path: Path) -> None:
    """Anyone can read the repository: its example JWT secret would let them mint admin
    tokens, its Traccar keys post positions. Only the test suite may run with them."""
    strong = SecretStr(secrets.token_hex(32))
    key = SecretStr(secrets.token_urlsafe(24))
    for env in ("development", "production"):
        with pytest.raises(InsecureConfiguration, match="JWT"):
            create_app(Settings(_env_file=None, environment=env))  # type: ignore[call-arg]
        for bad in ("short", EXAMPLE_JWT_SECRET):
            auth = AuthSettings(jwt_secret=SecretStr(bad), traccar_api_key=key)
            with pytest.raises(InsecureConfiguration, match="JWT"):
                check_secrets(Settings(_env_file=None, environment=env, auth=auth))  # type: ignore[call-arg]
        for public in sorted(PUBLIC_SECRETS - {EXAMPLE_JWT_SECRET}) + [""]:
            auth = AuthSettings(jwt_secret=strong, traccar_api_key=SecretStr(public))
            with pytest.raises(InsecureConfiguration, match="Traccar"):
                check_secrets(Settings(_env_file=None, environment=env, auth=auth))  # type: ignore[call-arg]
        for shared in (key, None):  # None: per-tenant keys only
            good = AuthSettings(jwt_secret=strong, traccar_api_key=shared)
            check_secrets(Settings(_env_file=None, environment=env, auth=good))  # type: ignore[call-arg]
    check_secrets(Settings(_env_file=None, environment="test"))  # type: ignore[call-arg]


def test_local_secrets_are_random_private_and_written_once(tmp_path: Path) -> None:
    path = tmp_path / ".secrets.env"
    assert ensure_local_secrets(path) is True
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    assert ensure_local_secrets(path) is False and path.read_text() == first  # never rotated
    other = tmp_path / "other.env"
    ensure_local_secrets(other)
    assert other.read_text() != first
    loaded = Settings(_env_file=path)  # type: ignore[call-arg]
    check_secrets(loaded.model_copy(update={"environment": "development"}))
    assert not is_public(loaded.auth.jwt_secret.get_secret_value())
