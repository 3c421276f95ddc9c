"""Live feed metrics (admin): the socket.io gateway of the process that answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.dependencies import OperatorDep, StateDep
from api.errors import ServiceUnavailable

router = APIRouter(prefix="/api/live", tags=["live"])


@router.get("/metrics")
async def metrics(user: OperatorDep, state: StateDep) -> dict[str, Any]:
    """Clients, rooms, frames/s, drops and per-client queue depths of this api process."""
    if state.live is None:
        raise ServiceUnavailable("the live feed is not running in this process")
    return {"process": state.live.process_id, **state.live.metrics()}
