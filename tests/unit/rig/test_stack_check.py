"""Setup names every port of the stack another program holds, before the first command refuses it."""

from rig import stack


def service(name: str, port: int, ours: bool) -> stack.Service:
    return stack.Service(name, port, lambda: True, lambda: None, lambda: None, "x", setting=f"{name}.port")


def test_a_port_held_by_a_stranger_is_named_with_the_setting_that_moves_it(monkeypatch):
    monkeypatch.setattr(stack, "port_open", lambda port: port in (6379, 9090))
    monkeypatch.setattr(stack, "owned", lambda pidname, port: port == 9090)  # 9090 is this checkout's own
    monkeypatch.setattr(stack, "holder", lambda port: "redis-server (pid 4242, /usr/bin/redis-server 127.0.0.1:6379)")
    lines = stack.foreign_servers([service("redis", 6379, False), service("prometheus", 9090, True), service("s3", 4566, False)])
    assert lines == [
        "redis: port 6379 is held by redis-server (pid 4242, /usr/bin/redis-server 127.0.0.1:6379), not by this "
        "checkout's stack; stop it, or move redis.port in btcpred/config/local.yaml"
    ]
