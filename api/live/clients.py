"""Each viewer's bounded queue: positions may be dropped (oldest first), events never.

The gateway hands a socket only a few packets at a time (Engine.IO queues without bound);
the rest waits here. A viewer that stops reading therefore costs at most
``max_frames`` position frames (or, for a seed client, one pending ``position:update`` per
driver of its tenant room) plus its undelivered visit events, and a viewer more than
``max_events`` visit events behind is disconnected rather than fed forever (it reconnects
and reloads, so nothing is silently lost).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engineio import packet as eio_packet

from api.live.batching import BBox
from api.live.direct import DirectSocket
from api.security import Principal


@dataclass(eq=False)
class ClientFeed:
    sid: str
    eio_sid: str
    principal: Principal
    token: str
    max_frames: int
    max_events: int
    bbox: BBox | None = None
    direct: DirectSocket | None = None  # write frames straight to its websocket (direct.py)
    rooms: set[str] = field(default_factory=set)
    # positions:batch frames (opted in), else seed-style position:update in tenant rooms
    batches: bool = False
    frames: deque[eio_packet.Packet] = field(default_factory=deque)
    # tenant-room position:update waiting, one per driver: a newer one replaces it in place
    updates: dict[str, eio_packet.Packet] = field(default_factory=dict)
    events: deque[eio_packet.Packet] = field(default_factory=deque)
    dropped: int = 0
    sent: int = 0
    # the token's exp and iat (epoch s): the session loop drops the socket at expiry, or
    # once its user logged out after the token was issued
    expires_at: float = float("inf")
    issued_at: float = 0.0
    # requests it may still make: refilled at a fixed rate up to a burst (one socket cannot
    # keep the process busy for everyone)
    budget: float = 0.0
    budget_at: float = 0.0

    def spend(self, now: float, rate: float, burst: float, cost: float = 1.0) -> bool:
        """Take ``cost`` from the request budget; False (nothing taken) when it is empty."""
        self.budget = min(burst, self.budget + (now - self.budget_at) * rate)
        self.budget_at = now
        if self.budget < cost:
            return False
        self.budget -= cost
        return True

    def push_frame(self, pkt: eio_packet.Packet) -> int:
        """Queue a droppable packet; return how many old ones were dropped to make room."""
        dropped = 0
        while len(self.frames) >= self.max_frames:
            self.frames.popleft()
            dropped += 1
        self.frames.append(pkt)
        self.dropped += dropped
        return dropped

    def push_update(self, driver_id: str, pkt: eio_packet.Packet) -> int:
        """Queue a driver's position:update, replacing one still waiting; return 1 if it did.

        Coalescing per driver bounds the queue by the drivers in the client's rooms, the
        same positions a batch frame would hold.
        """
        replaced = 1 if driver_id in self.updates else 0
        self.updates[driver_id] = pkt
        self.dropped += replaced
        return replaced

    def push_event(self, pkt: eio_packet.Packet) -> bool:
        """Queue a packet that must not be dropped; False when the client is too far behind."""
        if len(self.events) >= self.max_events:
            return False
        self.events.append(pkt)
        return True

    def pop(self) -> eio_packet.Packet | None:
        """The next packet to send: events first (they are rare and must not wait)."""
        if self.events:
            return self.events.popleft()
        if self.frames:
            return self.frames.popleft()
        if self.updates:
            driver = next(iter(self.updates))
            return self.updates.pop(driver)
        return None

    def __len__(self) -> int:
        return len(self.frames) + len(self.events) + len(self.updates)
