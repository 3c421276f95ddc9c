"""Debezium change events (JSON, schemas disabled) -> typed, validated ``ChangeEvent``.

What Debezium's MariaDB/MySQL connector emits with the connector config of
``ingest.cdc.connector`` (decimal.handling.mode=string, time.precision.mode=connect):
DECIMAL as a string, DATETIME as epoch milliseconds, DATE as days since 1970-01-01,
BOOLEAN as 0/1, JSON as a string. Anything that does not fit raises ``MalformedEvent``
(cannot be read) or ``UnexpectedEvent`` (readable, but not something we apply); the loop
dead-letters both.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from infrastructure.kafka import CDC_TABLES
from ingest.errors import IngestError

Op = Literal["c", "u", "d", "r"]
# (binlog file sequence, position in the file, row within the event): a total order of the
# changes of one server, compared lexicographically (PostgreSQL bigint[] compares the same).
Position = tuple[int, int, int]
EPOCH_DAY = date(1970, 1, 1)


class CdcError(IngestError):
    """Base of the CDC consumer's own errors."""

    code = "cdc_error"


class MalformedEvent(CdcError, ValueError):
    """A record that is not a readable Debezium change event."""

    code = "malformed_event"


class UnexpectedEvent(CdcError, ValueError):
    """A readable event we do not apply (another table, an unknown operation, bad values)."""

    code = "unexpected_event"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    table: str
    op: Op
    id: int
    # The row after the change, converted to Python values; None for a delete.
    row: dict[str, Any] | None
    position: Position
    source_ts: datetime
    snapshot: bool

    @property
    def position_text(self) -> str:
        """Return the position as sync_state shows it: ``file_seq:pos:row``."""
        return ":".join(str(p) for p in self.position)


def table_of_topic(topic: str, prefix: str) -> str:
    """Return the table a ``<prefix>cdc.<table>`` topic carries; raise UnexpectedEvent."""
    base = f"{prefix}cdc."
    table = topic[len(base) :] if topic.startswith(base) else ""
    if table not in CDC_TABLES:
        raise UnexpectedEvent(f"topic {topic} is not a cdc table topic")
    return table


def parse_event(table: str, value: bytes | None) -> ChangeEvent:
    """Decode and validate one Debezium change event of ``table``."""
    if value is None:
        raise UnexpectedEvent("tombstone (null value): tombstones.on.delete should be false")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEvent("event is not a JSON object")
    if "schema" in doc and "payload" in doc:
        raise UnexpectedEvent("schema envelope: the converter must have schemas.enable=false")
    op = doc.get("op")
    if op not in ("c", "u", "d", "r"):
        raise UnexpectedEvent(f"unknown operation {op!r}")
    source = doc.get("source")
    if not isinstance(source, dict):
        raise MalformedEvent("no source block")
    if source.get("table") != table:
        raise UnexpectedEvent(f"event of table {source.get('table')!r} on the {table} topic")
    position = _position(source)
    ts_ms = source.get("ts_ms")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        raise MalformedEvent("source.ts_ms is not an integer")
    image = doc.get("before") if op == "d" else doc.get("after")
    if not isinstance(image, dict):
        raise MalformedEvent(f"op {op} without its row image")
    row = convert_row(table, image)
    snapshot = source.get("snapshot")
    return ChangeEvent(
        table=table,
        op=op,
        id=row["id"],
        row=None if op == "d" else row,
        position=position,
        source_ts=datetime.fromtimestamp(ts_ms / 1000, tz=UTC),
        snapshot=snapshot not in (None, False, "false"),
    )


def _position(source: Mapping[str, Any]) -> Position:
    file, pos, row = source.get("file"), source.get("pos"), source.get("row", 0)
    if not isinstance(file, str) or "." not in file:
        raise MalformedEvent(f"source.file {file!r} is not a binlog file name")
    seq = file.rsplit(".", 1)[1]
    if not seq.isdigit():
        raise MalformedEvent(f"source.file {file!r} has no sequence number")
    if not isinstance(pos, int) or not isinstance(row, int) or pos < 0 or row < 0:
        raise MalformedEvent("source.pos / source.row are not non-negative integers")
    return (int(seq), pos, row)


# Column -> converter, per table. Every listed column must be present in the row image.
def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("not an integer")
    return v


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("not a string")
    return v


def _opt_text(v: Any) -> str | None:
    return None if v is None else _text(v)


def _bool(v: Any) -> bool:
    if v in (0, 1, True, False):
        return bool(v)
    raise TypeError("not a boolean (0/1)")


def _decimal(v: Any) -> Decimal:
    try:
        d = Decimal(_text(v))
    except InvalidOperation as exc:
        raise TypeError("not a decimal") from exc
    if not d.is_finite():
        raise TypeError("not a finite decimal")
    return d


def _opt_decimal(v: Any) -> Decimal | None:
    return None if v is None else _decimal(v)


def _datetime(v: Any) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(_int(v) / 1000, tz=UTC)


def _date(v: Any) -> date | None:
    return None if v is None else EPOCH_DAY + timedelta(days=_int(v))


def _json(v: Any) -> Any:
    if v is None:
        return None
    try:
        return orjson.loads(_text(v))
    except orjson.JSONDecodeError as exc:
        raise TypeError("not a JSON document") from exc


def _uuid(v: Any) -> str | None:
    return None if v is None else str(uuid.UUID(_text(v)))


def _lat(v: Any) -> float:
    f = float(_decimal(v))
    if not -90 <= f <= 90:
        raise TypeError("latitude out of range")
    return f


def _lng(v: Any) -> float:
    f = float(_decimal(v))
    if not -180 <= f <= 180:
        raise TypeError("longitude out of range")
    return f


def _radius(v: Any) -> int:
    r = _int(v)
    if r <= 0:
        raise TypeError("geofence radius must be positive")
    return r


def _role(v: Any) -> str:
    if v not in ("admin", "dispatcher", "driver"):
        raise TypeError("unknown role")
    return str(v)


COLUMNS: dict[str, dict[str, Any]] = {
    "accounts": {
        "id": _int,
        "tenant_id": _text,
        "name": _text,
        "account_type": _text,
        "settings": _json,
        "created_at": _datetime,
        "updated_at": _datetime,
    },
    "customers": {
        "id": _int,
        "tenant_id": _text,
        "account_id": _opt_int,
        "name": _text,
        "address": _opt_text,
        "lat": _lat,
        "lng": _lng,
        "geofence_radius": _radius,
        "customer_type": _opt_text,
        "contact_name": _opt_text,
        "contact_phone": _opt_text,
        "contact_email": _opt_text,
        "active": _bool,
        "created_at": _datetime,
        "updated_at": _datetime,
    },
    "products": {
        "id": _int,
        "tenant_id": _text,
        "sku": _text,
        "name": _text,
        "description": _opt_text,
        "unit_price": _decimal,
        "weight_kg": _opt_decimal,
        "active": _bool,
        "created_at": _datetime,
        "updated_at": _datetime,
    },
    "orders": {
        "id": _int,
        "tenant_id": _text,
        "customer_id": _int,
        "order_number": _text,
        "status": _text,
        "total": _decimal,
        "currency": _text,
        "scheduled_date": _date,
        "items": _json,
        "notes": _opt_text,
        "created_at": _datetime,
        "updated_at": _datetime,
    },
    "users": {
        "id": _int,
        "tenant_id": _text,
        "email": _text,
        "password_hash": _text,
        "name": _text,
        "role": _role,
        "driver_id": _uuid,
        "active": _bool,
        "created_at": _datetime,
        "updated_at": _datetime,
    },
}


def convert_row(table: str, image: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a Debezium row image of ``table`` to Python values; raise UnexpectedEvent."""
    columns = COLUMNS[table]
    missing = [c for c in columns if c not in image]
    if missing:
        raise UnexpectedEvent(f"{table} row without column(s) {', '.join(missing)}")
    out: dict[str, Any] = {}
    for column, convert in columns.items():
        try:
            out[column] = convert(image[column])
        except (TypeError, ValueError, OverflowError) as exc:
            raise UnexpectedEvent(f"{table}.{column}: {exc} ({image[column]!r:.80})") from exc
    return out
