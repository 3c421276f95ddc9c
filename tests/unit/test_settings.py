"""Settings: .env.example documents every variable; production refuses the example secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from api.main import InsecureConfiguration, check_production_settings, create_app
from infrastructure.settings import AuthSettings, Settings

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


def test_production_refuses_the_example_secret() -> None:
    with pytest.raises(InsecureConfiguration):
        create_app(Settings(environment="production"))
    short = Settings(environment="production", auth=AuthSettings(jwt_secret=SecretStr("short")))
    with pytest.raises(InsecureConfiguration):
        check_production_settings(short)
    good = AuthSettings(jwt_secret=SecretStr("x" * 48))
    check_production_settings(Settings(environment="production", auth=good))
