"""The producer's caching partitioner picks exactly the default partitioner's partition."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.kafka import CachingPartitioner


@given(st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=50), st.integers(1, 64))
def test_same_partition_as_the_default_partitioner(keys: list[bytes], n: int) -> None:
    cached, default = CachingPartitioner(max_keys=8), DefaultPartitioner()
    partitions = list(range(n))
    for key in keys + keys:  # the second round comes from the cache (or after a clear)
        assert cached(key, partitions, partitions) == default(key, partitions, partitions)


def test_device_and_driver_ids_spread_like_java_clients() -> None:
    # murmur2 as Kafka's Java client: a fixed key gives a fixed partition across processes
    cached = CachingPartitioner()
    six = list(range(6))
    keys = [str(uuid.UUID(int=i)).encode() for i in range(600)]
    counts = [0] * 6
    for key in keys:
        counts[cached(key, six, six)] += 1
    assert min(counts) > 60  # spread, not all on one partition
    assert cached(b"DEV001", six, six) == DefaultPartitioner()(b"DEV001", six, six)
