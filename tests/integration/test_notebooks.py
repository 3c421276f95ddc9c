"""Every notebook in notebooks/ executes without error against this run's databases (both
backends), seeded with the generated demo history and refreshed aggregates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analytics.demo import DAY1, DAY2, build_demo_history, utc
from analytics.refresh import refresh
from tests.conftest import Backend, settings_env

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
async def seeded(backend: Backend) -> None:
    async with backend.pool.acquire() as conn:
        await build_demo_history(conn)
        await refresh(conn, now=utc(DAY2, 23), late_window=timedelta(hours=2))


def test_there_are_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"fleet_daily_overview", "h3_heatmap", "driver_day", "eta_accuracy"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_executes(
    path: Path, backend: Backend, seeded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this process's environment: point it at this run's database.
    for key, value in settings_env(backend.settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_DAY", str(DAY1))
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    await client.async_execute()  # raises CellExecutionError on the first failing cell
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert executed and all(c.get("execution_count") for c in executed)
