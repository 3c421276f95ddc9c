"""The event loop every FleetPulse process runs on: uvloop, with the collector tuned for a
long-running service.

asyncio's own loop does its socket writes and polling in Python: on the ingest benchmark
``_SelectorSocketTransport.write`` and ``EpollSelector.select`` were a fifth of a worker's
and of the api's time (py-spy). uvloop (libuv, the loop asyncpg is built for) does them in C.

The cyclic garbage collector's default first threshold (700 allocations) suits scripts: a
worker allocates a few objects per field of every fix and holds hundreds of thousands of
long-lived ones (plans, route pieces, geofence tracks), and collecting took a fifth of its
CPU on the drain benchmark (3.3 s of 16 s, measured with ``gc.callbacks``). Collecting
every 20,000 allocations, with what start-up imported frozen out of every collection, cut
that to 0.7 s (``python -m bench.ingest --drain``: 162 → 139 µs a fix).
"""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")
GC_THRESHOLDS = (20_000, 10, 10)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a uvloop loop."""
    gc.freeze()  # modules, settings: alive for the whole process, never garbage
    gc.set_threshold(*GC_THRESHOLDS)
    return uvloop.run(main)
