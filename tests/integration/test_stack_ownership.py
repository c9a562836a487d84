"""The stack uses only servers it started: a stranger's server on its port stops it with one sentence."""

import shutil
import subprocess
import time

import pytest

from rig import stack
from rig.pipeline import free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def foreign_redis():
    """Debian's own redis-server as a user's system service would run it: no password, on some port."""
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not stack.port_open(port):
        assert time.monotonic() < deadline, "the foreign redis-server did not start"
        time.sleep(0.05)
    yield port, proc
    proc.terminate()
    proc.wait(5)


def test_a_foreign_redis_on_the_stacks_port_is_refused_in_one_sentence_and_left_running(settings, foreign_redis):
    port, proc = foreign_redis
    mine = settings.model_copy(update={"redis": settings.redis.model_copy(update={"port": port})})
    service = stack.redis_service(mine)
    assert service.healthy() and not service.running()  # it answers, but it is not this checkout's
    with pytest.raises(stack.StackError) as refused:
        service.ensure_started()
    sentence = str(refused.value)
    assert f"port {port} is held by redis-server (pid {proc.pid}" in sentence
    assert "not by this checkout's stack" in sentence and "redis.port in btcpred/config/local.yaml" in sentence
    assert proc.poll() is None  # a user's own Redis is never stopped behind their back


def test_a_server_is_ours_only_while_the_process_in_our_pidfile_holds_the_port(foreign_redis):
    port, proc = foreign_redis
    pidfile = stack.STATE / "ownership-test.pid"
    stack.STATE.mkdir(exist_ok=True)
    try:
        pidfile.write_text(str(proc.pid))
        assert stack.owned("ownership-test", port)
        assert not stack.owned("ownership-test", port + 1)  # it holds no other port
        pidfile.write_text("999999999")
        assert not stack.owned("ownership-test", port)  # a stale pidfile owns nothing
    finally:
        pidfile.unlink(missing_ok=True)
