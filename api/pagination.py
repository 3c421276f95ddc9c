"""Cursor (keyset) pagination for list routes.

A list answers a JSON array (the seed's shape) and, when there is more, the opaque cursor of
the next page in the ``X-Next-Cursor`` header (and a ``Link: <...>; rel="next"``, relative or
under ``FLEETPULSE_API__PUBLIC_BASE_URL``). The cursor is the sort key of the last row
returned, so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Query, Request, Response

from api.errors import BadRequest

T = TypeVar("T")
Key = str | int | float | datetime | date | uuid.UUID
NEXT_CURSOR_HEADER = "X-Next-Cursor"

LimitQuery = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).", examples=[50])]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=512,
        description="Opaque cursor from the previous page's X-Next-Cursor header.",
        examples=["WyIyMDI2LTAyLTA3VDA4OjAwOjAwKzAwOjAwIl0"],
    ),
]

PAGINATION_HEADERS: dict[str, Any] = {
    NEXT_CURSOR_HEADER: {
        "description": "Cursor of the next page; absent on the last page.",
        "schema": {"type": "string"},
    },
    "Link": {
        "description": 'The next page as `<url>; rel="next"`: a relative reference (path and'
        " query), or an absolute URL under the configured public base URL.",
        "schema": {"type": "string"},
    },
}


def paginated_responses(
    example: Any, media_type: str = "application/json"
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a paginated list route: its 200 example and the
    pagination headers."""
    return {200: {"headers": PAGINATION_HEADERS, "content": {media_type: {"example": example}}}}


def encode_cursor(values: Sequence[Key]) -> str:
    """Return the opaque cursor for a sort key."""
    plain = [v.isoformat() if isinstance(v, datetime | date) else v for v in values]
    raw = orjson.dumps(plain, default=str)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Int4(int):
    """Cursor kind of an ``integer`` (int4) column: a value past its range is malformed."""


INT4_RANGE = (-(2**31), 2**31 - 1)
INT8_RANGE = (-(2**63), 2**63 - 1)
# The dates the database and datetime can both hold, with room for time zone offsets.
MIN_DATE, MAX_DATE = date(1, 1, 2), date(9999, 12, 30)


def _cursor_value(kind: type, v: Any) -> Any:
    """Convert one cursor value to ``kind``; ValueError when it cannot be one."""
    if kind is datetime:
        if not isinstance(v, str):
            raise ValueError("not a time")
        dt = datetime.fromisoformat(v)
        if dt.tzinfo is None:
            raise ValueError("naive time")
        if not MIN_DATE <= dt.date() <= MAX_DATE:
            raise ValueError("time out of range")
        return dt
    if kind is date:
        if not isinstance(v, str):
            raise ValueError("not a date")
        return date.fromisoformat(v)
    if kind is uuid.UUID:
        if not isinstance(v, str):
            raise ValueError("not a uuid")
        return uuid.UUID(v)
    if kind is int or kind is Int4:
        low, high = INT4_RANGE if kind is Int4 else INT8_RANGE
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            raise ValueError("not an integer of the column's range")
        return v
    if kind is float:
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ValueError("not a number")
        return float(v)
    if not isinstance(v, str):
        raise ValueError("not a string")
    return v


def decode_cursor(cursor: str | None, kinds: Sequence[type]) -> list[Any] | None:
    """Return the sort key a cursor carries, converted to ``kinds``; 400 when malformed.

    ``Int4`` for an ``integer`` column, ``int`` for ``bigint``: a key outside the column's
    range is malformed, not a database error.
    """
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong arity")
        return [_cursor_value(kind, v) for kind, v in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise BadRequest("cursor is malformed; use the X-Next-Cursor of a previous page") from exc


def paginate(
    rows: Sequence[T],
    limit: int,
    key: Callable[[T], Sequence[Key]],
    request: Request,
    response: Response,
) -> Sequence[T]:
    """Trim rows fetched with ``LIMIT limit + 1`` and set the next-page headers."""
    if len(rows) <= limit:
        return rows
    page = rows[:limit]
    cursor = encode_cursor(key(page[-1]))
    response.headers[NEXT_CURSOR_HEADER] = cursor
    response.headers["Link"] = f'<{next_page_url(request, cursor, limit)}>; rel="next"'
    return page


def next_page_url(request: Request, cursor: str, limit: int) -> str:
    """The next page's URL: under the configured public base URL, else relative (path and
    query, resolved by the client against the URL it asked). Never from the Host header: a
    client sends whatever Host it likes, and a cache could serve its Link to others."""
    url = request.url.include_query_params(cursor=cursor, limit=limit)
    relative = f"{url.path}?{url.query}"
    base: str = getattr(request.app.state, "public_base_url", "")
    return f"{base}{relative}" if base else relative


@dataclass(frozen=True)
class Page:
    """One page of a list route: its size and the cursor it continues from."""

    limit: int
    cursor: str | None
    request: Request
    response: Response

    @property
    def fetch(self) -> int:
        """Rows to ask for: one more than the page, to know whether another follows."""
        return self.limit + 1

    def after(self, kinds: Sequence[type]) -> list[Any] | None:
        """The sort key the cursor carries (``decode_cursor``)."""
        return decode_cursor(self.cursor, kinds)

    def of(self, rows: Sequence[T], key: Callable[[T], Sequence[Key]]) -> Sequence[T]:
        """The page of rows fetched with ``fetch``, the next page's headers set."""
        return paginate(rows, self.limit, key, self.request, self.response)


def page_query(
    request: Request, response: Response, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> Page:
    """``?limit=&cursor=`` of a list route. FastAPI lists a dependency's query parameters
    after the route's own: a route with filters takes them as a dependency too, after this
    one, so that the documented order stays limit, cursor, filters."""
    return Page(limit, cursor, request, response)


PageDep = Annotated[Page, Depends(page_query)]
