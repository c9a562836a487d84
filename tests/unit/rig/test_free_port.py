"""Ports picked for the pipeline's services stay out of the kernel's ephemeral range and above the stack's fixed ports."""

import socket

from port_for import ephemeral

from rig.pipeline import PORT_FLOOR, free_port


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_bound():
    ranges = ephemeral.port_ranges()
    assert ranges  # read from /proc/sys/net/ipv4/ip_local_port_range on Linux
    for _ in range(20):
        port = free_port()
        assert port >= PORT_FLOOR and not any(low <= port <= high for low, high in ranges)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_returned(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        first = free_port()
        monkeypatch.setattr("port_for.api.random.sample", lambda ports, k: [busy, first])
        assert free_port() == first
