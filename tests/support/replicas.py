"""Replicas of the simulator as the stack runs them: separate ``failure-lab simulator``
processes sharing one Redis, each on its own loopback address.

Containers of a scaled compose service share a port on different addresses; here replica
``i`` listens on ``127.0.0.(i + 2)`` at one port free on all of them (Linux routes the whole of
127.0.0.0/8 to the loopback interface). Each is a real process started from the installed
console script, with the stack's environment: Redis, the traffic generator's target (the load
balancer), no per-client control limit (every call comes from the proxy's address), and the
Host names it is reached by allowed.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.process import LoggedProcess

CONSOLE_SCRIPT = Path(sys.executable).with_name("failure-lab")


def replica_address(index: int) -> str:
    return f"127.0.0.{index + 2}"


def port_free_on(addresses: list[str]) -> int:
    """A port nobody listens on at any of ``addresses`` at the moment of the call."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port: int = probe.getsockname()[1]
        taken = False
        for address in addresses:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((address, port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return port
    raise RuntimeError(f"no port free on all of {addresses}")


class SimulatorProcess:
    """``failure-lab simulator --host <address> --port <port>`` with ``environment``."""

    def __init__(
        self, workdir: Path, address: str, port: int, environment: Mapping[str, str]
    ) -> None:
        self.address = address
        self.port = port
        self._environment = dict(environment)
        self._process = LoggedProcess(workdir / f"simulator-{address}.log")

    @property
    def instance(self) -> str:
        """``host:port``, the ``instance`` label Prometheus gives it."""
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.instance}"

    @property
    def running(self) -> bool:
        return self._process.running

    def spawn(self) -> None:
        if not CONSOLE_SCRIPT.exists():
            raise RuntimeError(f"{CONSOLE_SCRIPT} is missing: run `make .venv/.synced`")
        command = [str(CONSOLE_SCRIPT), "simulator", "--host", self.address]
        command += ["--port", str(self.port)]
        self._process.spawn(command, env=self._environment)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            try:
                with urllib.request.urlopen(f"{self.url}/", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"replica {self.instance} did not start:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self._process.pid

    def log_tail(self) -> str:
        return self._process.log_tail()

    def stop(self) -> None:
        """SIGTERM, as ``docker compose stop`` sends; SIGKILL after 15 s."""
        self._process.stop(signal.SIGTERM, timeout=15)
