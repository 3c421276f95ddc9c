"""The Liechtenstein extract: fetched from Debian's osm2pgsql source package, verified, cached.

Each test fetches into its own folder (a couple of MB from the Debian mirror), so the first
call really downloads; the second one must not need apt at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.osm_extracts import LIECHTENSTEIN, ExtractError, extract_path, file_sha256

pytestmark = pytest.mark.integration


def test_fetch_verifies_and_caches_without_touching_apt_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt_config = sorted(p.name for p in Path("/etc/apt/sources.list.d").iterdir())
    path = extract_path("liechtenstein", directory=tmp_path)
    assert path == tmp_path / "osm" / "liechtenstein-2013-08-03.osm.pbf"
    assert path.stat().st_size == LIECHTENSTEIN.size
    assert file_sha256(path) == LIECHTENSTEIN.sha256
    # only the .pbf (and its lock) stays: the source package went with its temporary folder
    assert sorted(p.name for p in (tmp_path / "osm").iterdir()) == [
        ".liechtenstein-2013-08-03.osm.pbf.lock",
        "liechtenstein-2013-08-03.osm.pbf",
    ]
    assert sorted(p.name for p in Path("/etc/apt/sources.list.d").iterdir()) == apt_config

    # The second call is served from the cache: with no apt-get on the PATH it still works.
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert extract_path("liechtenstein", directory=tmp_path) == path


def test_a_damaged_cached_file_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = extract_path("liechtenstein", directory=tmp_path)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path / "no-such-bin"))
        with pytest.raises(ExtractError, match="apt-get is not available"):
            extract_path("liechtenstein", directory=tmp_path)
    assert extract_path("liechtenstein", directory=tmp_path) == path
    assert file_sha256(path) == LIECHTENSTEIN.sha256


def test_unknown_extract_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="liechtenstein"):
        extract_path("atlantis", directory=tmp_path)
