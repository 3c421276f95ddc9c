"""Text PostgreSQL cannot store is the client's error (422), not the server's (500).

PostgreSQL's text types refuse the NUL character (and, in jsonb, the ``\\u0000`` escape):
asyncpg raises CharacterNotInRepertoireError / UntranslatableCharacterError when a route
writes such a string. Found by the schemathesis run (tests/reliability/test_openapi_fuzz.py:
``POST /api/auth/register`` with a NUL in a name answered 500). Nothing was written: the
statement failed as a whole.
"""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request

from api.errors import error_body
from api.responses import OrjsonResponse

UNSTORABLE_TEXT: tuple[type[Exception], ...] = (
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
)


def install_bad_input_handlers(app: FastAPI) -> None:
    """Answer 422 ``invalid_input`` for text the database cannot store."""

    async def _unstorable(request: Request, exc: Exception) -> OrjsonResponse:
        return OrjsonResponse(
            error_body("invalid_input", "text must not contain NUL (\\u0000) characters"), 422
        )

    for exc_class in UNSTORABLE_TEXT:
        app.add_exception_handler(exc_class, _unstorable)
