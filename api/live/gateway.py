"""The socket.io gateway: connect with a token, authorised joins, batched fan-out.

Every api process runs its own gateway with its own Kafka consumer of
``gps.positions.enriched`` and ``visits.events`` (no consumer group: all partitions, from
the latest offset), so each process has every position and fans out to its own sockets
without any cross-process pub/sub (docs/live-feed.md has the measurement behind that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import socketio
from aiokafka import AIOKafkaConsumer
from engineio import packet as eio_packet
from redis.asyncio import Redis

from api.live.batching import (
    BBox,
    LivePosition,
    RoomBatcher,
    batch_packet,
    event_packet,
    parse_position,
)
from api.live.clients import ClientFeed
from api.live.direct import DirectSocket, frame_of
from api.live.rooms import (
    NAMESPACE,
    OPERATORS_ROOM,
    ROOM_KINDS,
    TENANT_ROOM_PREFIX,
    JoinRefused,
    Owner,
    RoomKind,
    authorize_join,
    default_rooms,
    driver_room,
    join_target,
    room_name,
    route_room,
    tenant_room,
)
from api.records.drivers import room_owner
from api.records.latest import fix_age_s, is_active, latest_positions
from api.security import InvalidToken, token_times, verify_access_token
from infrastructure.kafka import GPS_POSITIONS_ENRICHED, VISITS_EVENTS, create_reader
from infrastructure.metrics import LIVE_FEED, LiveFeedSample
from infrastructure.postgres import Conn
from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.cdc.lag import lag_snapshot
from ingest.errors import UndecodableMessage

log = logging.getLogger(__name__)
# cdc:lag payload builder: (connection, settings) -> CdcLagSnapshot.
CdcLagSource = Callable[[Conn, Settings], Awaitable[dict[str, Any]]]


@dataclass
class LiveCounters:
    positions_in: int = 0
    visits_in: int = 0
    invalid_in: int = 0
    batch_frames: int = 0  # positions:batch packets handed to sockets
    position_updates: int = 0
    visit_updates: int = 0
    dropped: int = 0
    refused_connects: int = 0
    refused_joins: int = 0
    slow_disconnects: int = 0
    cdc_lag_broadcasts: int = 0
    rate_limited: int = 0  # requests refused for an empty budget
    sessions_ended: int = 0  # sockets dropped for an expired token or a logout


# get-active-drivers answers every tracked driver of the tenant: it costs this many requests
ACTIVE_DRIVERS_COST = 10.0


class LiveGateway:
    """socket.io server for namespace ``/tracking`` plus the consumer and batch loops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live = settings.live
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        origins = settings.api.cors_origin_list()
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins="*" if origins == ["*"] else (origins or None),
            logger=False,
            engineio_logger=False,
        )
        self.clients: dict[str, ClientFeed] = {}
        self.rooms: dict[str, set[str]] = {}
        self.batcher = RoomBatcher()
        self.counters = LiveCounters()
        self.backlogged: set[str] = set()
        self.cdc_lag_source: CdcLagSource | None = lag_snapshot
        self._rate_samples: deque[tuple[float, int]] = deque(maxlen=64)
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._keys: RedisKeys | None = None
        self._register_handlers()

    # -- lifecycle -------------------------------------------------------------------------

    def asgi(self, other_app: Any) -> socketio.ASGIApp:
        """The ASGI app serving socket.io at /socket.io and everything else by other_app."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other_app)

    async def start(self, pool: asyncpg.Pool, redis: Redis, keys: RedisKeys) -> None:
        """Start the consumer (from the latest offsets) and the batch/pump/cdc-lag loops.

        Returns at once: a broker that is away delays the feed, not the api's start.
        """
        self._pool, self._redis, self._keys = pool, redis, keys
        self._tasks = [
            asyncio.create_task(self._consume(), name="live-consume"),
            asyncio.create_task(self._tick_loop(), name="live-batch"),
            asyncio.create_task(self._pump_loop(), name="live-pump"),
            asyncio.create_task(self._cdc_lag_loop(), name="live-cdc-lag"),
            asyncio.create_task(self._session_loop(), name="live-sessions"),
        ]
        LIVE_FEED.add(self)  # this process's /metrics reads live_feed_sample()

    def _new_consumer(self) -> AIOKafkaConsumer:
        kafka = self.settings.kafka
        return create_reader(  # every process reads every partition
            kafka,
            kafka.topic(GPS_POSITIONS_ENRICHED),
            kafka.topic(VISITS_EVENTS),
            auto_offset_reset="latest",
            max_poll_records=5000,
        )

    async def stop(self) -> None:
        LIVE_FEED.discard(self)
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._side_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def wait_ready(self) -> None:
        """Return once the consumer holds every partition and knows its start offsets."""
        await self.ready.wait()

    # -- socket.io handlers ----------------------------------------------------------------

    def _register_handlers(self) -> None:
        on = self.sio.on
        on("connect", self._on_connect, namespace=NAMESPACE)
        on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        for kind in ROOM_KINDS:
            on(f"join-{kind}", self._join_handler(kind), namespace=NAMESPACE)
            on(f"leave-{kind}", self._leave_handler(kind), namespace=NAMESPACE)
        on("get-active-drivers", self._on_active_drivers, namespace=NAMESPACE)
        on("subscribe-bbox", self._on_subscribe_bbox, namespace=NAMESPACE)
        on("subscribe-batches", self._batches_handler(True), namespace=NAMESPACE)
        on("unsubscribe-batches", self._batches_handler(False), namespace=NAMESPACE)
        on("unsubscribe-bbox", self._on_unsubscribe_bbox, namespace=NAMESPACE)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            header = environ.get("HTTP_AUTHORIZATION", "")
            token = header[7:] if header.lower().startswith("bearer ") else None
        try:
            principal = verify_access_token(token or "", self.settings.auth)
        except InvalidToken:
            self.counters.refused_connects += 1
            # Accept, then say why and disconnect: the seed's clients listen for `error`.
            self._spawn(self._refuse(sid, "invalid or expired token"))
            return True
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        feed = ClientFeed(
            sid=sid,
            eio_sid=eio_sid,
            principal=principal,
            token=token or "",
            max_frames=self.live.client_queue_frames,
            max_events=self.live.client_max_events,
            direct=DirectSocket.from_environ(environ) if self.live.direct_websocket else None,
        )
        # positions:batch is ours: a client asks for it; a seed client gets position:update
        feed.batches = isinstance(auth, dict) and auth.get("batches") is True
        feed.issued_at, feed.expires_at = token_times(token or "")
        feed.budget, feed.budget_at = self.live.client_request_burst, time.monotonic()
        self.clients[sid] = feed
        for room in default_rooms(principal, self.settings.auth.operator_tenant_set()):
            self._enter(feed, room)
        return True

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        feed = self.clients.pop(sid, None)
        self.backlogged.discard(sid)
        if feed is None:
            return
        for room in list(feed.rooms):
            self._leave(feed, room)

    async def _refuse(self, sid: str, message: str) -> None:
        await self.sio.emit("error", {"message": message}, to=sid, namespace=NAMESPACE)
        await self.sio.disconnect(sid, namespace=NAMESPACE)

    def _join_handler(self, kind: RoomKind) -> Callable[[str, Any], Awaitable[dict[str, Any]]]:
        async def join(sid: str, data: Any = None) -> dict[str, Any]:
            feed = await self._authenticated(sid)
            if feed is None:
                return {"ok": False, "error": "unauthenticated"}
            if not await self._within_budget(feed, f"join-{kind}"):
                return {"ok": False, "error": "rate_limited"}
            try:
                target = join_target(kind, data)
                room = await authorize_join(feed.principal, kind, target, self._owner)
                if room not in feed.rooms and len(feed.rooms) >= self.live.max_rooms_per_client:
                    raise JoinRefused(
                        f"at most {self.live.max_rooms_per_client} rooms per connection"
                    )
            except JoinRefused as exc:
                self.counters.refused_joins += 1
                await self.sio.emit(
                    "error",
                    {"message": str(exc), "event": f"join-{kind}"},
                    to=sid,
                    namespace=NAMESPACE,
                )
                return {"ok": False, "error": str(exc)}
            self._enter(feed, room)
            return {"ok": True, "room": room}

        return join

    def _leave_handler(self, kind: RoomKind) -> Callable[[str, Any], Awaitable[dict[str, Any]]]:
        async def leave(sid: str, data: Any = None) -> dict[str, Any]:
            feed = self.clients.get(sid)
            if feed is None:
                return {"ok": False, "error": "unauthenticated"}
            if not await self._within_budget(feed, f"leave-{kind}"):
                return {"ok": False, "error": "rate_limited"}
            try:
                target = join_target(kind, data)
            except JoinRefused as exc:
                return {"ok": False, "error": str(exc)}
            room = room_name(kind, target if kind == "tenant" else str(uuid.UUID(target)))
            self._leave(feed, room)
            return {"ok": True, "room": room}

        return leave

    async def _authenticated(self, sid: str) -> ClientFeed | None:
        """The client's feed if its token is still valid; else error + disconnect."""
        feed = self.clients.get(sid)
        if feed is None:
            return None
        try:
            verify_access_token(feed.token, self.settings.auth)
        except InvalidToken:
            self.counters.refused_connects += 1
            await self._refuse(sid, "token expired: reconnect with a fresh token")
            return None
        return feed

    async def _within_budget(self, feed: ClientFeed, event: str, cost: float = 1.0) -> bool:
        """Spend from the socket's request budget; when it is empty say so and refuse."""
        if feed.spend(
            time.monotonic(), self.live.client_requests_per_s, self.live.client_request_burst, cost
        ):
            return True
        self.counters.rate_limited += 1
        await self.sio.emit(
            "error",
            {"message": "too many requests: slow down", "event": event},
            to=feed.sid,
            namespace=NAMESPACE,
        )
        return False

    async def check_sessions(self) -> int:
        """Disconnect sockets whose token expired or whose user logged out since it was
        issued; return how many. (Checking only when a socket spoke let one keep receiving.)"""
        now = time.time()
        ended = {sid: "token expired" for sid, f in self.clients.items() if f.expires_at <= now}
        if self._redis is not None and self._keys is not None and self.clients:
            users = sorted({f.principal.user_id for f in self.clients.values()})
            for i in range(0, len(users), 1000):
                chunk = users[i : i + 1000]
                marks = await self._redis.mget([self._keys.logged_out(u) for u in chunk])
                logged_out = {u: float(m) for u, m in zip(chunk, marks, strict=True) if m}
                for sid, f in self.clients.items():
                    at = logged_out.get(f.principal.user_id)
                    if at is not None and f.issued_at <= at:
                        ended.setdefault(sid, "logged out")
        for sid, why in ended.items():
            self.counters.sessions_ended += 1
            await self._refuse(sid, f"{why}: reconnect with a fresh token")
            await self._on_disconnect(sid)  # stop feeding it now, not when the close lands
        return len(ended)

    async def _session_loop(self) -> None:
        while True:
            await asyncio.sleep(self.live.session_check_interval_s)
            try:
                await self.check_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live feed: session check failed")

    async def _owner(self, kind: RoomKind, target: str) -> Owner | None:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            owner = await room_owner(conn, kind, uuid.UUID(target))
        return None if owner is None else Owner(*owner)

    async def _on_active_drivers(self, sid: str, data: Any = None) -> list[dict[str, Any]]:
        """The latest position of each of the tenant's active drivers (a driver: their own).

        Active: the latest fix is at most ``active_window_s`` old. ``{"includeStale": true}``
        also answers older ones (still in Redis, within the retention), each with ``ageS``.
        """
        feed = await self._authenticated(sid)
        if feed is None:
            return []
        if not await self._within_budget(feed, "get-active-drivers", ACTIVE_DRIVERS_COST):
            return []
        assert self._redis is not None and self._keys is not None
        p = feed.principal
        if p.role == "driver":
            ids = [p.driver_id] if p.driver_id else []
        else:
            members = await self._redis.zrange(self._keys.geo(p.tenant_id), 0, -1)
            ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        include_stale = isinstance(data, dict) and data.get("includeStale") is True
        window_s, now_ms = self.live.active_window_s, int(time.time() * 1000)
        out: list[dict[str, Any]] = []
        for msg in await latest_positions(self._redis, self._keys, ids):
            if msg is None or msg["tenantId"] != p.tenant_id:
                continue
            age = fix_age_s(msg, now_ms)
            if include_stale:
                out.append({**msg, "ageS": age})
            elif is_active(age, window_s):
                out.append(dict(msg))  # the seed's shape, unchanged
        return out

    async def _on_subscribe_bbox(self, sid: str, data: Any = None) -> dict[str, Any]:
        feed = self.clients.get(sid)
        if feed is None:
            return {"ok": False, "error": "unauthenticated"}
        if not await self._within_budget(feed, "subscribe-bbox"):
            return {"ok": False, "error": "rate_limited"}
        try:
            feed.bbox = BBox.parse(data)
        except ValueError as exc:
            await self.sio.emit(
                "error",
                {"message": str(exc), "event": "subscribe-bbox"},
                to=sid,
                namespace=NAMESPACE,
            )
            return {"ok": False, "error": str(exc)}
        return {"ok": True}

    def _batches_handler(self, on: bool) -> Callable[[str, Any], Awaitable[dict[str, Any]]]:
        async def handler(sid: str, data: Any = None) -> dict[str, Any]:
            feed = self.clients.get(sid)
            if feed is None:
                return {"ok": False, "error": "unauthenticated"}
            if not await self._within_budget(feed, "subscribe-batches"):
                return {"ok": False, "error": "rate_limited"}
            feed.batches = on
            return {"ok": True, "batches": on}

        return handler

    async def _on_unsubscribe_bbox(self, sid: str, data: Any = None) -> dict[str, Any]:
        feed = self.clients.get(sid)
        if feed is not None:
            feed.bbox = None
        return {"ok": feed is not None}

    def _enter(self, feed: ClientFeed, room: str) -> None:
        feed.rooms.add(room)
        self.rooms.setdefault(room, set()).add(feed.sid)

    def _leave(self, feed: ClientFeed, room: str) -> None:
        feed.rooms.discard(room)
        members = self.rooms.get(room)
        if members is not None:
            members.discard(feed.sid)
            if not members:
                del self.rooms[room]

    # -- fan-out ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            consumer = self._new_consumer()
            try:
                await consumer.start()
            except asyncio.CancelledError:
                await consumer.stop()
                raise
            except Exception as exc:  # broker away at start: try again
                log.warning("live feed: Kafka not reachable (%s); retrying", exc)
                await consumer.stop()
                await asyncio.sleep(2.0)
                continue
            self._consumer = consumer
            try:
                await self._await_assignment(consumer)
                self.ready.set()
                await self._consume_from(consumer)
            finally:
                self.ready.clear()
                self._consumer = None
                await consumer.stop()

    @staticmethod
    async def _await_assignment(consumer: AIOKafkaConsumer) -> None:
        # Without a group, partitions are assigned from metadata shortly after start.
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for it
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)

    async def _consume_from(self, consumer: AIOKafkaConsumer) -> None:
        positions_topic = self.settings.kafka.topic(GPS_POSITIONS_ENRICHED)
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception:  # broker away: aiokafka reconnects; keep polling
                log.exception("live feed: consumer poll failed")
                await asyncio.sleep(1.0)
                continue
            touched: set[str] = set()
            for tp, records in batches.items():
                for record in records:
                    if record.value is None:
                        continue
                    if tp.topic == positions_topic:
                        self._on_position(record.value, touched)
                    else:
                        self._on_visit_event(record.value, touched)
            if touched:
                await self._pump(touched)

    def _on_position(self, raw: bytes, touched: set[str]) -> None:
        try:
            pos = parse_position(raw)
        except UndecodableMessage:
            self.counters.invalid_in += 1
            return
        self.counters.positions_in += 1
        rooms = pos.rooms()  # the tenant's, the driver's, the route's
        # batched only for rooms someone is in: most driver and route rooms have no viewer
        watched = tuple(room for room in rooms if room in self.rooms)
        if not watched:
            return
        self.batcher.add(pos, watched)
        # Seed compatibility: every position, unbatched, to its driver's and route's rooms.
        targets = self._members(rooms[1:])
        if targets:
            pkt = event_packet("position:update", pos.raw)
            for sid in targets:
                feed = self.clients.get(sid)
                if feed is not None:
                    self.counters.dropped += feed.push_frame(pkt)
                    self.counters.position_updates += 1
                    touched.add(sid)

    def _on_visit_event(self, raw: bytes, touched: set[str]) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            event = None
        tenant = event.get("tenantId") if isinstance(event, dict) else None
        if not isinstance(event, dict) or not isinstance(tenant, str):
            self.counters.invalid_in += 1
            return
        self.counters.visits_in += 1
        rooms = [tenant_room(tenant)]
        for key, name in (("routeId", route_room), ("driverId", driver_room)):
            value = event.get(key)
            if isinstance(value, str) and value:
                rooms.append(name(value))
        targets = self._members(rooms)
        if not targets:
            return
        pkt = event_packet("visit:update", raw)
        for sid in targets:
            feed = self.clients.get(sid)
            if feed is None:
                continue
            # A driver's socket sits in its own driver room only; staff see the tenant room.
            if feed.push_event(pkt):
                self.counters.visit_updates += 1
                touched.add(sid)
            else:
                self.counters.slow_disconnects += 1
                self._spawn(self._refuse(sid, "too far behind on visit events: reconnect"))

    def _members(self, rooms: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for room in rooms:
            members = self.rooms.get(room)
            if members:
                out |= members
        return out

    async def _tick_loop(self) -> None:
        interval = self.live.batch_interval_ms / 1000
        while True:
            started = time.monotonic()
            try:
                await self.flush_batches()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live feed: batch flush failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def flush_batches(self) -> None:
        """Send each room's pending positions as one frame to each of its batch viewers, and
        as one ``position:update`` per driver to the seed clients of tenant rooms."""
        touched: set[str] = set()
        for room, positions in self.batcher.drain().items():
            members = self.rooms.get(room)
            if not members:
                continue
            whole: eio_packet.Packet | None = None
            boxed: dict[BBox, eio_packet.Packet | None] = {}
            updates: list[tuple[LivePosition, eio_packet.Packet]] | None = None
            is_tenant_room = room.startswith(TENANT_ROOM_PREFIX)
            for sid in list(members):
                feed = self.clients.get(sid)
                if feed is None:
                    continue
                if not feed.batches:
                    # driver and route rooms sent them every fix already (_on_position)
                    if not is_tenant_room:
                        continue
                    if updates is None:
                        updates = [(p, event_packet("position:update", p.raw)) for p in positions]
                    box = feed.bbox
                    for p, update in updates:
                        if box is None or box.contains(p.lon, p.lat):
                            self.counters.dropped += feed.push_update(p.driver_id, update)
                            self.counters.position_updates += 1
                    touched.add(sid)
                    continue
                if feed.bbox is None:
                    if whole is None:
                        whole = batch_packet(room, positions)
                    pkt: eio_packet.Packet | None = whole
                else:
                    if feed.bbox not in boxed:
                        box = feed.bbox
                        inside = [p for p in positions if box.contains(p.lon, p.lat)]
                        boxed[box] = batch_packet(room, inside) if inside else None
                    pkt = boxed[feed.bbox]
                if pkt is None:
                    continue
                self.counters.dropped += feed.push_frame(pkt)
                self.counters.batch_frames += 1
                touched.add(sid)
        self._rate_samples.append((time.monotonic(), self.counters.batch_frames))
        await self._pump(touched)

    def _socket_backlog(self, eio_sid: str) -> int | None:
        """Packets Engine.IO holds for this socket; None when the socket is gone."""
        socket = self.sio.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return None
        return int(socket.queue.qsize())

    async def _pump(self, sids: Iterable[str]) -> None:
        """Move queued packets to sockets that have room; the rest stay (bounded) queued."""
        limit = self.live.socket_backlog_packets
        limit_bytes = self.live.socket_backlog_bytes
        for sid in sids:
            feed = self.clients.get(sid)
            if feed is None:
                self.backlogged.discard(sid)
                continue
            backlog = self._socket_backlog(feed.eio_sid)
            if backlog is None:
                self.backlogged.discard(sid)
                continue
            direct = feed.direct
            if direct is not None and direct.open:
                # one transport.write per packet; the transport's buffer is the backlog
                while direct.buffered() < limit_bytes:
                    pkt = feed.pop()
                    if pkt is None:
                        break
                    direct.write(frame_of(pkt))
                    feed.sent += 1
            else:
                while backlog < limit:
                    pkt = feed.pop()
                    if pkt is None:
                        break
                    await self.sio.eio.send_packet(feed.eio_sid, pkt)
                    feed.sent += 1
                    backlog += 1
            if len(feed):
                self.backlogged.add(sid)
            else:
                self.backlogged.discard(sid)

    async def _pump_loop(self) -> None:
        """Retry sockets that were full, a few times per batch interval."""
        while True:
            await asyncio.sleep(0.05)
            if self.backlogged:
                try:
                    await self._pump(list(self.backlogged))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("live feed: pump failed")

    async def _cdc_lag_loop(self) -> None:
        """``cdc:lag`` to the operators' room every interval, while operators are connected."""
        while True:
            await asyncio.sleep(self.live.cdc_lag_interval_s)
            try:
                await self.broadcast_cdc_lag()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live feed: cdc:lag broadcast failed")

    async def broadcast_cdc_lag(self) -> None:
        admins = self.rooms.get(OPERATORS_ROOM)
        if not admins or self.cdc_lag_source is None or self._pool is None:
            return
        async with self._pool.acquire() as conn:
            snapshot = await self.cdc_lag_source(conn, self.settings)
        pkt = event_packet("cdc:lag", orjson.dumps(snapshot, default=str))
        for sid in list(admins):
            feed = self.clients.get(sid)
            if feed is not None:
                self.counters.dropped += feed.push_frame(pkt)
        self.counters.cdc_lag_broadcasts += 1
        await self._pump(list(admins))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- metrics ---------------------------------------------------------------------------

    def seed_stats(self) -> dict[str, int]:
        """The seed's health block: this process's connected sockets and rooms with members."""
        return {"connectedClients": len(self.clients), "activeRooms": len(self.rooms)}

    def live_feed_sample(self) -> LiveFeedSample:
        """This gateway's counters for Prometheus (read from the metrics thread at a scrape)."""
        c = self.counters
        by_kind: dict[str, int] = {}
        for room in list(self.rooms):  # list() copies in one step under the GIL
            kind = room.split(":", 1)[0]
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return LiveFeedSample(
            viewers=len(self.clients),
            queued_packets=sum(len(f) for f in list(self.clients.values())),
            rooms_by_kind=by_kind,
            positions_in=c.positions_in,
            frames_sent=c.batch_frames,
            position_updates_sent=c.position_updates,
            visit_updates_sent=c.visit_updates,
            dropped_frames=c.dropped,
            slow_disconnects=c.slow_disconnects,
            refused_connections=c.refused_connects,
            refused_joins=c.refused_joins,
            rate_limited=c.rate_limited,
            sessions_ended=c.sessions_ended,
        )

    def metrics(self) -> dict[str, Any]:
        """Clients, rooms, frames/s, drops and queue depths of this process's gateway."""
        samples = self._rate_samples
        rate = 0.0
        if len(samples) >= 2:
            recent = [s for s in samples if s[0] >= samples[-1][0] - 10.0]
            (t0, n0), (t1, n1) = recent[0], recent[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        depths = [len(f) for f in self.clients.values()]
        c = self.counters
        by_kind: dict[str, int] = {}
        for room in self.rooms:
            kind = room.split(":", 1)[0]
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return {
            "clients": len(self.clients),
            "rooms": len(self.rooms),
            "roomsByKind": by_kind,
            "batchIntervalMs": self.live.batch_interval_ms,
            "framesPerSecond": round(rate, 2),
            "framesSent": c.batch_frames,
            "positionUpdatesSent": c.position_updates,
            "visitUpdatesSent": c.visit_updates,
            "positionsIn": c.positions_in,
            "visitEventsIn": c.visits_in,
            "invalidIn": c.invalid_in,
            "dropped": c.dropped,
            "refusedConnects": c.refused_connects,
            "refusedJoins": c.refused_joins,
            "rateLimited": c.rate_limited,
            "sessionsEnded": c.sessions_ended,
            "slowDisconnects": c.slow_disconnects,
            "cdcLagBroadcasts": c.cdc_lag_broadcasts,
            "backloggedClients": len(self.backlogged),
            "directClients": sum(1 for f in self.clients.values() if f.direct is not None),
            "maxClientQueue": max(depths, default=0),
            "clientQueueLimit": self.live.client_queue_frames,
            "queuedPackets": sum(depths),
        }
