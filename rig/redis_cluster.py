"""A local Redis Cluster of plain redis-server processes: 3 masters, one replica each.

    python -m rig.redis_cluster start [--base-port 7100]
    python -m rig.redis_cluster stop

Production runs Redis in cluster mode (ElastiCache); this is the same topology on
loopback, for the cluster tests (tests/integration/test_redis_cluster.py) and for
trying the stack against a cluster (``BTCPRED_REDIS__CLUSTER=true``,
``BTCPRED_REDIS__PORT=7100``). A short node timeout makes failovers take ~2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".local" / "redis-cluster"


class ClusterError(RuntimeError):
    pass


@dataclass
class LocalRedisCluster:
    directory: Path = DEFAULT_DIR
    base_port: int = 7100
    masters: int = 3
    node_timeout_ms: int = 1000

    @property
    def ports(self) -> list[int]:
        return list(range(self.base_port, self.base_port + 2 * self.masters))

    def cli(self, port: int, *args: str, check: bool = True) -> str:
        out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            raise ClusterError(f"redis-cli -p {port} {' '.join(args)}: {out.stderr or out.stdout}")
        return out.stdout

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise ClusterError("redis-server not found: run scripts/setup.sh")
        self.stop()
        for port in self.ports:
            node = self.directory / str(port)
            shutil.rmtree(node, ignore_errors=True)
            node.mkdir(parents=True)
            subprocess.run(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    "--dir",
                    str(node),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "yes",
                    "--repl-diskless-sync",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                    "--pidfile",
                    str(node / "redis.pid"),
                    "--logfile",
                    str(node / "redis.log"),
                ],
                check=True,
            )
        self._wait(lambda: all(self.cli(p, "ping", check=False).strip() == "PONG" for p in self.ports), "nodes up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait(self.healthy, "cluster_state:ok on every node, each master with a replica")

    def healthy(self) -> bool:
        up = [p for p in self.ports if self.pid(p) is not None]
        if any("cluster_state:ok" not in self.cli(p, "cluster", "info", check=False) for p in up):
            return False
        roles = self.roles()
        if list(roles.values()).count("master") != self.masters or list(roles.values()).count("slave") != len(up) - self.masters:
            return False
        # a replica that never finished its first sync refuses to take over ("unable to failover")
        return all(
            "master_link_status:up" in self.cli(p, "info", "replication", check=False)
            for p, role in roles.items()
            if role == "slave"
        )

    def roles(self) -> dict[int, str]:
        """port -> master/slave of the nodes that are up, as the cluster sees them."""
        out = {}
        for line in self.cli(self.any_up(), "cluster", "nodes").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if "fail" not in fields[2]:
                out[port] = "master" if "master" in fields[2] else "slave"
        return out

    def any_up(self) -> int:
        for port in self.ports:
            if self.pid(port) is not None:
                return port
        raise ClusterError("no node is up")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot."""
        slot = int(self.cli(self.any_up(), "cluster", "keyslot", key))
        for line in self.cli(self.any_up(), "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise ClusterError(f"no master serves slot {slot}")

    def pid(self, port: int) -> int | None:
        pidfile = self.directory / str(port) / "redis.pid"
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def kill(self, port: int) -> None:
        """SIGKILL a node: no shutdown handshake, its replica must take over by failure detection."""
        pid = self.pid(port)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for port in self.ports:
            pid = self.pid(port)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)

    def _wait(self, check, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except ClusterError:
                pass
            time.sleep(0.2)
        raise ClusterError(f"redis cluster: no {what} within {timeout_s}s (logs in {self.directory})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--base-port", type=int, default=7100)
    args = parser.parse_args(argv)
    cluster = LocalRedisCluster(base_port=args.base_port)
    try:
        cluster.start() if args.action == "start" else cluster.stop()
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"redis cluster on ports {cluster.ports[0]}-{cluster.ports[-1]}: {'up' if args.action == 'start' else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
