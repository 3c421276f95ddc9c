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
that to 0.7 s (``python -m bench.ingest --drain``: 162 → 139 µs a fix). On a worker a
young collection costs what is alive in it, the batch in flight (~6 ms), whatever the
threshold, so a worker collects every 100,000 allocations (``BATCH_GC_THRESHOLDS``): 4 % of
its CPU went to collecting (0.46 s of 11.2 s on the drain), now 1 % (0.11 of 11.3 s). The
api keeps 20,000: more of what it allocates stays alive between requests, and its young
collections grew from 14 to 96 ms each at 100,000.
"""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")
GC_THRESHOLDS = (20_000, 10, 10)
BATCH_GC_THRESHOLDS = (100_000, 10, 10)  # a process that handles batches (the worker)


def run(main: Coroutine[Any, Any, T], *, gc_thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> T:
    """``asyncio.run`` on a uvloop loop."""
    gc.freeze()  # modules, settings: alive for the whole process, never garbage
    gc.set_threshold(*gc_thresholds)
    return uvloop.run(main)
