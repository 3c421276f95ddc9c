"""Writing a shared frame straight to a viewer's websocket, bypassing Engine.IO's queue.

Engine.IO hands every packet to a per-socket writer task (a queue, a ``wait_for`` task per
wake-up, then the ASGI send): ~150 µs a socket-frame, which at 5,000 viewers is most of a
1 s tick on one event loop (docs/live-feed.md). A server's websocket frame is not masked, so
the framed bytes of one socket.io packet are the same for every viewer: they are built once
per packet and written to each viewer's transport with one ``transport.write``.

Only for sockets whose connect arrived on a websocket served by uvicorn's websockets-sansio
or wsproto protocol (both write whole frames with one synchronous ``transport.write``, so a
frame written here never interleaves with one of theirs). Anything else — long polling, a
socket that upgraded from polling, another server — keeps Engine.IO's path. Flow control is
the transport's own write buffer: a viewer whose buffer holds more than the limit gets no
more frames until it drains (the gateway's bounded queue drops the oldest meanwhile).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from engineio import packet as eio_packet

# uvicorn protocol classes whose send() frames a message and writes it in one call
_SUPPORTED = {"WebSocketsSansIOProtocol", "WSProtocol"}
_TEXT_FIN = 0x81


def websocket_text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented websocket text frame (RFC 6455 §5.2), server to client."""
    n = len(payload)
    if n < 126:
        header = bytes((_TEXT_FIN, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", _TEXT_FIN, 126, n)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, n)
    return header + payload


def frame_of(pkt: eio_packet.Packet) -> bytes:
    """The websocket frame of an Engine.IO packet, built once and kept on the packet."""
    cached: bytes | None = getattr(pkt, "ws_frame", None)
    if cached is None:
        encoded = pkt.encode()
        data = encoded.encode() if isinstance(encoded, str) else encoded
        cached = websocket_text_frame(data)
        pkt.ws_frame = cached
    return cached


class DirectSocket:
    """The transport under one viewer's websocket."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport: asyncio.WriteTransport = protocol.transport

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> DirectSocket | None:
        """From the connect request's environ, when it is a supported websocket."""
        if environ.get("asgi.scope", {}).get("type") != "websocket":
            return None
        protocol = getattr(environ.get("asgi.send"), "__self__", None)
        if type(protocol).__name__ not in _SUPPORTED:
            return None
        transport = getattr(protocol, "transport", None)
        # uvloop's transports are not asyncio.WriteTransport subclasses: check the methods
        if not all(
            callable(getattr(transport, m, None))
            for m in ("write", "get_write_buffer_size", "is_closing")
        ):
            return None
        return cls(protocol)

    @property
    def open(self) -> bool:
        return not self._transport.is_closing() and not getattr(self._protocol, "close_sent", False)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    def write(self, frame: bytes) -> None:
        self._transport.write(frame)
