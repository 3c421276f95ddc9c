"""The stack's pure helpers for TimescaleDB and the PostgreSQL config: stamps, source lookup,
pinned apt requirements, build progress, config parsing and when a restart is needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.settings import PROJECT_ROOT, Settings
from infrastructure.stack._apt import satisfied
from infrastructure.stack._service import AptRequirement
from infrastructure.stack.postgres import parse_conf, restart_needed
from infrastructure.stack.timescaledb import (
    SHARED_STAMP,
    Stamp,
    TimescaleDB,
    build_requirements,
    find_source,
    format_duration,
    progress_line,
    sha256_of,
)

SHA = "d988c21cbcfe7751ab68b4b93b68989059082361c04ee392c25d49fa5010ceae"
PG = "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"


def test_stamp_round_trips_and_names_sha_and_version() -> None:
    stamp = Stamp(SHA, PG)
    text = stamp.text(Path("/src/timescaledb-2.28.4-dev.tar.gz"))
    assert f"sha256 {SHA}\n" in text
    assert f"postgresql {PG}\n" in text
    assert Stamp.parse(text) == stamp


@pytest.mark.parametrize(
    "text",
    ["", f"sha256 {SHA}\n", f"postgresql {PG}\n", f"sha256 nothex\npostgresql {PG}\n"],
)
def test_incomplete_stamp_is_none(text: str) -> None:
    assert Stamp.parse(text) is None


def test_stamp_differs_when_either_part_changes() -> None:
    assert Stamp(SHA, PG) != Stamp(SHA, PG.replace("15.18", "15.20"))
    assert Stamp(SHA, PG) != Stamp("0" * 64, PG)


def test_find_source_takes_the_newest_tarball_of_a_folder(tmp_path: Path) -> None:
    for name in ("timescaledb-2.9.0.tar.gz", "timescaledb-2.28.4-dev.tar.gz", "other.tar.gz"):
        (tmp_path / name).write_bytes(b"x")
    assert find_source(tmp_path) == tmp_path / "timescaledb-2.28.4-dev.tar.gz"
    assert (
        find_source(tmp_path / "timescaledb-2.9.0.tar.gz") == tmp_path / "timescaledb-2.9.0.tar.gz"
    )


def test_find_source_without_tarball_is_none(tmp_path: Path) -> None:
    assert find_source(tmp_path) is None
    assert find_source(tmp_path / "absent") is None


def test_source_setting_defaults_beside_the_project_and_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Settings().stack.timescaledb_source == PROJECT_ROOT.parent / "shared" / "vendor"
    monkeypatch.setenv("FLEETPULSE_STACK__TIMESCALEDB_SOURCE", str(tmp_path))
    monkeypatch.setenv("FLEETPULSE_STACK__TIMESCALEDB", "false")
    settings = Settings()
    assert settings.stack.timescaledb_source == tmp_path
    assert settings.stack.timescaledb is False
    assert settings.stack.plain_pg_port == 5434


def test_sha256_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_server_headers_are_pinned_to_the_installed_server() -> None:
    needs = build_requirements(15, "15.18-0+deb12u1")
    assert AptRequirement(("cmake",)) in needs
    assert AptRequirement(("libkrb5-dev",)) in needs
    dev = needs[-1]
    assert dev.alternatives == ("postgresql-server-dev-15",)
    assert dev.spec("postgresql-server-dev-15") == "postgresql-server-dev-15=15.18-0+deb12u1"
    # No server yet: the headers come unpinned, from the same apt run as the server.
    assert build_requirements(15, None)[-1].spec("postgresql-server-dev-15") == (
        "postgresql-server-dev-15"
    )
    assert len(build_requirements(None, None)) == 2


def test_a_pinned_requirement_needs_that_exact_version() -> None:
    pinned = AptRequirement(("postgresql-server-dev-15",), version="15.18-0+deb12u1")
    assert satisfied(pinned, {"postgresql-server-dev-15": "15.18-0+deb12u1"})
    assert not satisfied(pinned, {"postgresql-server-dev-15": "15.20-0+deb12u1"})
    assert not satisfied(pinned, {})
    anyone = AptRequirement(("postgresql", "postgresql-15"))
    assert satisfied(anyone, {"postgresql-15": "15.18-0+deb12u1"})


def test_progress_line_shows_makes_last_percentage_and_line() -> None:
    output = (
        "-- Configuring done\n"
        "[ 35%] Building C object src/a.c.o\n"
        "[ 36%] Building C object src/copy.c.o\n"
        "In file included from x.h:1:\n"
    )
    assert progress_line(output) == "36% - In file included from x.h:1:"
    assert progress_line("-- Detecting C compiler\n\n") == "-- Detecting C compiler"
    assert progress_line("") == ""
    assert len(progress_line("[ 1%] " + "x" * 500)) < 140


def test_format_duration() -> None:
    assert format_duration(42.4) == "42 s"
    assert format_duration(67.0) == "1 min 7 s"
    assert format_duration(189.5) == "3 min 10 s"


CONF = """\
# comment = ignored
port = 5433
shared_buffers = 1GB
max_worker_processes = 16
shared_preload_libraries = 'timescaledb,pg_stat_statements'
log_line_prefix = '%m [%p] %q%u@%d '   # trailing comment
timescaledb.max_background_workers = 8
"""


def test_parse_conf_unquotes_values() -> None:
    values = parse_conf(CONF)
    assert values["port"] == "5433"
    assert values["shared_preload_libraries"] == "timescaledb,pg_stat_statements"
    assert values["log_line_prefix"] == "%m [%p] %q%u@%d "
    assert "# comment" not in values


def test_restart_needed_only_for_restart_settings_that_differ() -> None:
    desired = parse_conf(CONF)
    running: dict[str, str | None] = {
        "shared_preload_libraries": "timescaledb, pg_stat_statements",
        "max_worker_processes": "16",
        "shared_buffers": "1GB",
        "timescaledb.max_background_workers": "8",
    }
    assert restart_needed(desired, running) == []
    # A server started before TimescaleDB was preloaded: the library and its settings differ.
    before = {
        **running,
        "shared_preload_libraries": "pg_stat_statements",
        "max_worker_processes": "8",
        "timescaledb.max_background_workers": None,
    }
    assert restart_needed(desired, before) == [
        "shared_preload_libraries",
        "max_worker_processes",
        "timescaledb.max_background_workers",
    ]
    # port is not compared (a server on another port would not have been reached at all).
    assert restart_needed({**desired, "port": "1"}, running) == []


def _fake_install(tmp_path: Path, *, source: bool) -> TimescaleDB:
    """A TimescaleDB build against a fake ``pg_config`` whose directories are under tmp_path."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "share" / "extension").mkdir(parents=True)
    pg_config = tmp_path / "pg_config"
    pg_config.write_text(
        f'#!/bin/sh\necho "{PG}"\necho "{tmp_path}/lib"\necho "{tmp_path}/share"\n'
    )
    pg_config.chmod(0o755)
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    if source:
        (vendor / "timescaledb-2.28.4-dev.tar.gz").write_bytes(b"source")
    base = Settings()
    settings = base.model_copy(
        update={
            "stack": base.stack.model_copy(
                update={"root": tmp_path / "stack", "timescaledb_source": vendor}
            )
        }
    )
    return TimescaleDB(settings, pg_config)


def _install_files(tmp_path: Path) -> None:
    (tmp_path / "lib" / "timescaledb.so").write_bytes(b"")
    (tmp_path / "share" / "extension" / "timescaledb.control").write_text("")


def test_without_source_or_installation_one_warning_and_plain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build = _fake_install(tmp_path, source=False)
    assert build.pending()  # so that every `up` says it
    with caplog.at_level("WARNING", logger="infrastructure.stack"):
        assert build.ensure() is False
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"TimescaleDB source not found at {tmp_path / 'vendor'}" in warnings[0]
    assert "running plain PostgreSQL" in warnings[0]
    assert "Timescale's packages or docker compose" in warnings[0]
    assert not build.built


def test_without_source_an_installed_timescaledb_is_kept(tmp_path: Path) -> None:
    build = _fake_install(tmp_path, source=False)
    _install_files(tmp_path)
    assert not build.pending()
    assert build.ensure() is True
    assert not build.built


def test_rebuild_due_until_installed_with_a_matching_stamp(tmp_path: Path) -> None:
    build = _fake_install(tmp_path, source=True)
    source = build.source()
    assert source is not None
    stamp = Stamp(sha256_of(source), PG).text(source)
    build.dir.mkdir(parents=True)
    build.stamp_path.write_text(stamp)
    assert build.pending()  # stamped, but the library is gone
    _install_files(tmp_path)
    assert not build.pending()
    build.stamp_path.write_text(Stamp(sha256_of(source), "PostgreSQL 15.20").text(source))
    assert build.pending()  # another server version


def test_an_installation_stamped_by_another_stack_root_is_adopted(tmp_path: Path) -> None:
    build = _fake_install(tmp_path, source=True)
    _install_files(tmp_path)
    assert build.pending()  # no stamp anywhere: built by someone else, rebuild
    source = build.source()
    assert source is not None
    stamp = Stamp(sha256_of(source), PG).text(source)
    (tmp_path / "share" / "extension" / SHARED_STAMP).write_text(stamp)
    assert not build.pending()
    assert build.stamp_path.read_text() == stamp
