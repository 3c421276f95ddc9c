"""Planning's shortest paths: the travel-time tables agree with networkx, paths are real."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from simulator.network import load_network
from simulator.planning import TravelTimes


def test_travel_times_and_paths_match_networkx_dijkstra() -> None:
    net = load_network("helsinki")
    times = TravelTimes(net)
    nodes = sorted(net.graph.nodes)
    rng = random.Random(2)
    for source in rng.sample(nodes, 5):
        want = nx.single_source_dijkstra_path_length(net.graph, source, weight="time")
        targets = rng.sample(nodes, 50)
        got = times.times_from(source, targets)
        assert got == pytest.approx([want[t] for t in targets])
        for target in targets[:10]:
            path = times.path(source, target)
            assert path[0] == source and path[-1] == target
            assert sum(e.free_flow_s for e in net.path_edges(path)) == pytest.approx(want[target])
    assert times.time(nodes[0], nodes[0]) == 0.0 and times.path(nodes[0], nodes[0]) == [nodes[0]]
