"""Ports picked for the pipeline's services stay out of the kernel's ephemeral range."""
import socket

from deploy.local.pipeline import PORT_FLOOR, ephemeral_ports, free_port


def test_free_ports_lie_below_the_ephemeral_range_and_can_be_bound():
    low, high = ephemeral_ports()
    assert PORT_FLOOR < low <= high
    for _ in range(20):
        port = free_port()
        assert PORT_FLOOR <= port < low  # the kernel never hands these to a socket bound to port 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_returned(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", PORT_FLOOR))
        picks = iter([PORT_FLOOR, PORT_FLOOR, PORT_FLOOR + 1])
        monkeypatch.setattr("deploy.local.pipeline.random.randrange", lambda *_: next(picks))
        assert free_port() == PORT_FLOOR + 1
