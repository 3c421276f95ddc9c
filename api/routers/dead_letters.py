"""Dead letters of the position pipeline: list, inspect, replay (admins of the tenant)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.dependencies import AdminDep, ConnDep, StateDep
from ingest.dead_letters import (
    get_dead_letter,
    list_dead_letters,
    record_replay,
    replay,
    replay_times,
)

router = APIRouter(prefix="/api/admin/dead-letters", tags=["dead letters"])

Partition = Annotated[int, Path(ge=0, le=10_000)]
Offset = Annotated[int, Path(ge=0)]


@router.get("")
async def dead_letters(
    state: StateDep,
    user: AdminDep,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    """The newest positions that could not be processed, with the error of each."""
    letters = await list_dead_letters(state.settings.kafka, user.tenant_id, limit=limit)
    replayed = await replay_times(conn, user.tenant_id)
    return {
        "deadLetters": [
            {**d.to_json(), "replayedAt": _iso(replayed.get((d.partition, d.offset)))}
            for d in letters[:limit]
        ]
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


@router.get("/{partition}/{offset}")
async def dead_letter(
    state: StateDep, user: AdminDep, partition: Partition, offset: Offset
) -> dict[str, Any]:
    letter = await get_dead_letter(state.settings.kafka, user.tenant_id, partition, offset)
    return letter.to_json()


@router.post("/{partition}/{offset}/replay")
async def replay_dead_letter(
    state: StateDep, user: AdminDep, conn: ConnDep, partition: Partition, offset: Offset
) -> dict[str, Any]:
    """Send the original record through the pipeline again (after fixing its cause)."""
    letter = await get_dead_letter(state.settings.kafka, user.tenant_id, partition, offset)
    await replay(state.publisher, letter)
    await record_replay(conn, user.tenant_id, partition, offset, uuid.UUID(user.user_id))
    return {"status": "replayed", "partition": partition, "offset": offset}
