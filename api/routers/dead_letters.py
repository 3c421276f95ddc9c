"""Dead letters of the position pipeline: list, inspect, replay (admins of the tenant)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.dependencies import AdminDep, ConnDep, StateDep
from api.errors import NotFound
from infrastructure.kafka import GPS_POSITIONS_DLQ
from ingest.dead_letters import (
    DeadLetterNotFound,
    get_dead_letter,
    list_dead_letters,
    replay,
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
    replays = await conn.fetch(
        """SELECT partition, "offset", max(replayed_at) AS at FROM dead_letter_replays
           WHERE topic = $1 AND tenant_id = $2 GROUP BY partition, "offset\"""",
        GPS_POSITIONS_DLQ,
        user.tenant_id,
    )
    replayed = {(r["partition"], r["offset"]): r["at"].isoformat() for r in replays}
    return {
        "deadLetters": [
            {**d.to_json(), "replayedAt": replayed.get((d.partition, d.offset))}
            for d in letters[:limit]
        ]
    }


@router.get("/{partition}/{offset}")
async def dead_letter(
    state: StateDep, user: AdminDep, partition: Partition, offset: Offset
) -> dict[str, Any]:
    try:
        letter = await get_dead_letter(state.settings.kafka, user.tenant_id, partition, offset)
    except DeadLetterNotFound as exc:
        raise NotFound("dead letter not found") from exc
    return letter.to_json()


@router.post("/{partition}/{offset}/replay")
async def replay_dead_letter(
    state: StateDep, user: AdminDep, conn: ConnDep, partition: Partition, offset: Offset
) -> dict[str, Any]:
    """Send the original record through the pipeline again (after fixing its cause)."""
    try:
        letter = await get_dead_letter(state.settings.kafka, user.tenant_id, partition, offset)
    except DeadLetterNotFound as exc:
        raise NotFound("dead letter not found") from exc
    await replay(state.publisher, letter)
    await conn.execute(
        """INSERT INTO dead_letter_replays (topic, partition, "offset", tenant_id, replayed_by)
           VALUES ($1, $2, $3, $4, $5)""",
        GPS_POSITIONS_DLQ,
        partition,
        offset,
        user.tenant_id,
        uuid.UUID(user.user_id),
    )
    return {"status": "replayed", "partition": partition, "offset": offset}
