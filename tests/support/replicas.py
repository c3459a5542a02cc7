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
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

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
        self._log_path = workdir / f"simulator-{address}.log"
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def instance(self) -> str:
        """``host:port``, the ``instance`` label Prometheus gives it."""
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.instance}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self) -> None:
        if not CONSOLE_SCRIPT.exists():
            raise RuntimeError(f"{CONSOLE_SCRIPT} is missing: run `make .venv/.synced`")
        self._log = self._log_path.open("ab")
        command = [str(CONSOLE_SCRIPT), "simulator", "--host", self.address]
        command += ["--port", str(self.port)]
        self._proc = subprocess.Popen(
            command, env=self._environment, stdout=self._log, stderr=subprocess.STDOUT
        )

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
        assert self._proc is not None, "not started"
        return self._proc.pid

    def log_tail(self) -> str:
        return self._log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM, as ``docker compose stop`` sends; SIGKILL after 15 s."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
