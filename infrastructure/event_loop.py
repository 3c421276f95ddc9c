"""The event loop every FleetPulse process runs on: uvloop.

asyncio's own loop does its socket writes and polling in Python: on the ingest benchmark
``_SelectorSocketTransport.write`` and ``EpollSelector.select`` were a fifth of a worker's
and of the api's time (py-spy). uvloop (libuv, the loop asyncpg is built for) does them in C.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a uvloop loop."""
    return uvloop.run(main)
