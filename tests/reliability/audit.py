"""Dependency audit: pip-audit (the venv) and npm audit (dashboard/), with an allow-list.

``make audit`` runs ``python -m tests.reliability.audit``. It fails when a known
vulnerability is not on the allow-list (``audit-allowlist.json`` at the repository root),
when an allow-list entry has expired or gives no reason, or when a vulnerability database
cannot be reached (an audit that could not look is not a pass). docs/security.md explains the
allow-list and where the audit can run (it needs PyPI's JSON API or OSV, and npm's advisory
endpoint: not reachable from the offline development machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = ROOT / "audit-allowlist.json"


@dataclass(frozen=True)
class Allowed:
    ecosystem: str  # "python" or "npm"
    id: str  # PYSEC-/GHSA-/CVE- id as the tool reports it
    package: str
    reason: str
    expires: date


class AllowListError(ValueError):
    pass


def load_allowlist(data: dict[str, Any], today: date) -> list[Allowed]:
    """Parse and check the allow-list: every entry needs a reason and an unexpired date."""
    out: list[Allowed] = []
    for ecosystem in ("python", "npm"):
        for entry in data.get(ecosystem, []):
            try:
                allowed = Allowed(
                    ecosystem,
                    str(entry["id"]),
                    str(entry["package"]),
                    str(entry["reason"]).strip(),
                    date.fromisoformat(str(entry["expires"])),
                )
            except (KeyError, ValueError) as exc:
                raise AllowListError(f"{ecosystem} entry {entry!r}: {exc}") from exc
            if not allowed.reason:
                raise AllowListError(f"{allowed.id}: the reason is empty")
            if allowed.expires < today:
                raise AllowListError(f"{allowed.id} ({allowed.package}) expired {allowed.expires}")
            out.append(allowed)
    return out


def npm_findings(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(package, advisory id) pairs from `npm audit --json`; the id is the GHSA from the URL."""
    if "error" in report:
        raise RuntimeError(f"npm audit failed: {report['error']}")
    found: set[tuple[str, str]] = set()
    for name, vuln in report.get("vulnerabilities", {}).items():
        for via in vuln.get("via", []):
            if isinstance(via, dict):
                url = str(via.get("url", ""))
                found.add((name, url.rsplit("/", 1)[-1] or str(via.get("source", "?"))))
    return found


def audit_python(allowed: list[Allowed]) -> list[str]:
    ignore = [arg for a in allowed if a.ecosystem == "python" for arg in ("--ignore-vuln", a.id)]
    cmd = [sys.executable, "-m", "pip_audit", "--strict", "--progress-spinner", "off"]
    cmd += ["--skip-editable", "--desc", "off", *ignore]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return []
    return [
        f"pip-audit failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    ]


def audit_npm(allowed: list[Allowed]) -> list[str]:
    proc = subprocess.run(
        ["npm", "audit", "--json"],
        cwd=ROOT / "dashboard",
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(proc.stdout or "{}")
        found = npm_findings(report)
    except (json.JSONDecodeError, RuntimeError) as exc:
        return [f"npm audit could not run: {exc}\n{proc.stderr[-2000:]}"]
    if proc.returncode != 0 and not found:
        return [f"npm audit failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"]
    ok = {a.id for a in allowed if a.ecosystem == "npm"}
    return [f"npm: {pkg} {adv}" for pkg, adv in sorted(found) if adv not in ok]


def main() -> int:
    today = datetime.now(UTC).date()
    try:
        allowed = load_allowlist(json.loads(ALLOWLIST.read_text()), today)
    except (OSError, json.JSONDecodeError, AllowListError) as exc:
        print(f"audit allow-list {ALLOWLIST.name}: {exc}", file=sys.stderr)
        return 2
    problems = audit_python(allowed) + audit_npm(allowed)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"audit: no known vulnerabilities outside {ALLOWLIST.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
