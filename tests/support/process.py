"""A program a test runs, its output appended to a log file of its own.

The real backends the tests start (Prometheus, Jaeger, HAProxy, dnsmasq, simulator replicas)
are all run the same way: spawned with stdout and stderr in a log, stopped with a signal and a
bounded wait, killed like a crash, and their log's tail shown when they do not come up.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


class LoggedProcess:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            list(command), env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def send_signal(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            self._proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        """``sig``, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._ended()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._ended()

    def _ended(self) -> None:
        if self._proc is not None:
            self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-chars:]
