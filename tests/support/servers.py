"""Real servers on loopback for the tests: the app under uvicorn, a killable redis-server.

The app runs in the test's own event loop under the project's ``Server`` (the same class
the CLI uses), so a test talks to it over real HTTP and the traffic generator inside it
sends real HTTP back to it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from simulator.server import free_port, serving

__all__ = ["RedisProcess", "free_port", "serve_app"]


@asynccontextmanager
async def serve_app(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:``port`` until the block ends; yields the base URL."""
    async with serving(app, port, grace=5) as url:
        yield url


class RedisProcess:
    """A redis-server of one test's own, which the test may kill and start again."""

    def __init__(self, workdir: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._server = server
        self._workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                self._server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
