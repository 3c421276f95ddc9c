"""The enriched-position message: one typed definition, written by the worker, read by the feed."""

from __future__ import annotations

import orjson
import pytest

from api.live.batching import ENTRY_FIELDS, parse_position
from geo.cells import point_to_cell
from ingest.devices import Device
from ingest.errors import UndecodableMessage
from ingest.model import EnrichedMessage, Position, parse_enriched
from ingest.movement import Movement
from ingest.writers import EnrichedPosition

FIX_MS = 1_770_465_600_000


def enriched(movement: Movement) -> EnrichedPosition:
    position = Position(
        tenant_id="tenant-1",
        device_id="DEV001",
        fix_time_ms=FIX_MS,
        received_ms=FIX_MS + 412,
        lat=60.1705,
        lon=24.944,
        speed_kmh=18.5,
        protocol="osmand",
        attributes={"batteryLevel": 87},
    )
    device = Device("DEV001", "a1b2c3d4-0001-4000-8000-000000000001", "tenant-1", "John Smith")
    return EnrichedPosition(position, device, point_to_cell(24.944, 60.1705), movement)


def test_the_writer_writes_every_field_of_the_type_and_no_other() -> None:
    stops = (("v-1", 90.0), ("v-2", 700.5))
    message = enriched(Movement(route_id="r-1", eta_s=90.0, stop_etas=stops)).to_message()
    assert set(message) == EnrichedMessage.__required_keys__ | EnrichedMessage.__optional_keys__
    assert message["eta"] == "2026-02-07T12:01:30.000+00:00"
    assert message["stopEtas"][1] == {
        "visitId": "v-2",
        "etaSeconds": 700.5,
        "eta": "2026-02-07T12:11:40.500+00:00",
    }
    # the fixes between two every-stop refreshes carry no stopEtas (docs/eta.md)
    between = enriched(Movement(route_id="r-1", eta_s=80.0)).to_message()
    everything = EnrichedMessage.__required_keys__ | EnrichedMessage.__optional_keys__
    assert set(between) == everything - {"stopEtas"}


def test_a_batch_entry_keeps_only_fields_of_the_message() -> None:
    assert set(ENTRY_FIELDS) <= EnrichedMessage.__required_keys__
    assert len(set(ENTRY_FIELDS)) == len(ENTRY_FIELDS)


def test_what_the_writer_encodes_the_reader_parses_back() -> None:
    message = enriched(Movement(route_id="r-1", next_visit_id="v-1", eta_s=90.0)).to_message()
    raw = orjson.dumps(message)
    assert parse_enriched(raw) == message
    live = parse_position(raw)
    assert (live.tenant_id, live.driver_id, live.route_id) == (
        "tenant-1",
        message["driverId"],
        "r-1",
    )
    assert (live.lon, live.lat) == (24.944, 60.1705)
    assert orjson.loads(orjson.dumps(live.entry)) == {k: message[k] for k in ENTRY_FIELDS}
    assert live.raw == raw


def test_a_position_without_a_route_has_no_route_room() -> None:
    live = parse_position(orjson.dumps(enriched(Movement()).to_message()))
    assert live.route_id is None
    assert live.rooms() == ("tenant:tenant-1", "driver:a1b2c3d4-0001-4000-8000-000000000001")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"driverId": "d", "lat": 1, "lon": 2}',
        b'{"tenantId": "t", "driverId": "", "lat": 1, "lon": 2}',
        b'{"tenantId": "t", "driverId": "d", "lat": "1", "lon": 2}',
        b'{"tenantId": "t", "driverId": "d", "lat": 1, "lon": 2, "routeId": 7}',
    ],
)
def test_an_unusable_message_is_refused(raw: bytes) -> None:
    with pytest.raises(UndecodableMessage):
        parse_enriched(raw)
    with pytest.raises(UndecodableMessage):
        parse_position(raw)
