"""Shared fixtures: a real ``redis-server`` for the tests of the Redis-backed components.

The server is started once per session on a free loopback port, with persistence off and its
working directory in a temporary folder. A missing ``redis-server`` fails the tests that need
it: a skipped Redis test would pass silently on exactly the machine that never ran it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

_START_ATTEMPTS = 3
_START_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nobody listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(server: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    log = workdir / "redis.log"
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        command = [server, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        command += ["--logfile", str(log)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers_ping(port):
                return proc, port
            time.sleep(0.05)
        _stop(proc)
    detail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    pytest.fail(f"redis-server did not answer PING after {_START_ATTEMPTS} attempts:\n{detail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://`` URL of a private ``redis-server`` that lives for the whole session."""
    server = shutil.which("redis-server") or shutil.which("/usr/bin/redis-server")
    if server is None:
        pytest.fail(
            "redis-server is not installed, and the Redis tests need a real one: "
            "install it (Debian/Ubuntu: apt-get install redis-server) and run again",
            pytrace=False,
        )
    proc, port = _start_redis(server, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A client on the session's Redis, with the database emptied before the test."""
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
