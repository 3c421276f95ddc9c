"""The websocket frames the live feed writes straight to viewers' sockets (RFC 6455 §5.2)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.live.direct import websocket_text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 2_000_000])
def test_a_text_frame_of_any_size_parses_back_with_the_websockets_library(size: int) -> None:
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()[:size]
    reader = StreamReader()
    reader.feed_data(websocket_text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=None)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        pytest.fail("the parser wanted more bytes than the frame has")
    assert frame.opcode == Opcode.TEXT and frame.fin and frame.data == payload
