"""The audit's allow-list rules (no network: `make audit` itself needs the advisory services)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from tests.reliability.audit import ALLOWLIST, AllowListError, load_allowlist, npm_findings

TODAY = date(2026, 11, 27)


def entry(**overrides: str) -> dict[str, str]:
    return {
        "id": "GHSA-aaaa-bbbb-cccc",
        "package": "example",
        "reason": "only reachable through a feature we do not use",
        "expires": "2027-01-31",
    } | overrides


def test_the_repository_allowlist_is_valid_today() -> None:
    from datetime import UTC, datetime

    load_allowlist(json.loads(ALLOWLIST.read_text()), datetime.now(UTC).date())


def test_a_valid_entry_is_allowed() -> None:
    [allowed] = load_allowlist({"npm": [entry()]}, TODAY)
    assert (allowed.ecosystem, allowed.id, allowed.expires) == (
        "npm",
        "GHSA-aaaa-bbbb-cccc",
        date(2027, 1, 31),
    )


@pytest.mark.parametrize(
    "bad",
    [
        entry(expires="2026-11-26"),  # expired yesterday
        entry(reason="  "),  # no reason
        entry(expires="soon"),  # not a date
        {"id": "PYSEC-1", "package": "x", "reason": "r"},  # no expiry
    ],
)
def test_an_expired_or_unexplained_entry_fails(bad: dict[str, str]) -> None:
    with pytest.raises(AllowListError):
        load_allowlist({"python": [bad]}, TODAY)


def test_npm_findings_are_read_from_the_advisory_urls() -> None:
    report = {
        "vulnerabilities": {
            "left-pad": {"via": [{"url": "https://github.com/advisories/GHSA-1111-2222-3333"}]},
            "wrapper": {"via": ["left-pad"]},  # only transitively vulnerable: named by its dep
        }
    }
    assert npm_findings(report) == {("left-pad", "GHSA-1111-2222-3333")}
    with pytest.raises(RuntimeError):
        npm_findings({"error": {"code": "EAUDITNOLOCK"}})
