"""A real three-node Redis Cluster on loopback (Debian's redis-server in cluster mode, joined by redis-cli).

`start_redis_cluster()` starts three masters with --cluster-enabled yes, assigns the 16384 slots with
`redis-cli --cluster create ... --cluster-yes` and waits until every node reports cluster_state:ok. The fixture
`redis_cluster` is module-scoped and flushes nothing: tests use their own key prefixes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.redis_server import RedisServer, start_redis

REDIS_CLI = os.environ.get("NEUROSCALE_REDIS_CLI", "/usr/bin/redis-cli")


@dataclass
class RedisCluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """Any one node: the cluster client discovers the others from it."""
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(size: int = 3, timeout: float = 30.0) -> RedisCluster:
    cli = shutil.which(REDIS_CLI) or REDIS_CLI
    if not os.path.exists(cli):
        raise FileNotFoundError(f"{cli} not found; install the Debian package redis-tools")
    nodes: list[RedisServer] = []
    try:
        for _ in range(size):
            # Each node keeps its nodes.conf in its own work directory (start_redis passes --dir).
            nodes.append(start_redis("--cluster-enabled", "yes", "--cluster-node-timeout", "5000"))
        addresses = [f"{node.host}:{node.port}" for node in nodes]
        subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(cli, node) for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return RedisCluster(nodes)


def _cluster_ok(cli: str, node: RedisServer) -> bool:
    info = subprocess.run([cli, "-h", node.host, "-p", str(node.port), "cluster", "info"],
                          capture_output=True, text=True, timeout=5).stdout
    return "cluster_state:ok" in info


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = start_redis_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
