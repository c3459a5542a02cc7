"""HAProxy running the repository's ``haproxy/haproxy.cfg``, and a DNS server for it to ask.

The stack's load balancer finds the simulator's replicas by DNS (``resolvers`` and
``server-template`` in haproxy.cfg), so the tests run it the same way: a real dnsmasq on a
loopback port answers ``simulator`` with one A record per replica (the replicas listen on
127.0.0.2, 127.0.0.3, ... at one port, as containers of a scaled service do at 8001), and
HAProxy runs the committed file with exactly these differences:

- the one line ``parse-resolv-conf`` (Docker's resolver, read from /etc/resolv.conf) becomes
  ``nameserver test 127.0.0.1:<dnsmasq's port>``: the file is rendered with that
  substitution, which must match exactly once;
- the three variables the file reads from the environment are set: ``FRONTEND_BIND`` and
  ``STATS_BIND`` (``127.0.0.1:<free port>`` instead of ``:8080`` and ``:8405``) and
  ``SIMULATOR_ADDRESS`` (``simulator:<the replicas' port>`` instead of ``simulator:8001``).

Balancing, health checks, resolver timings, server templates and the Prometheus exporter
run as committed. HAProxy comes from Debian (``apt-get install haproxy``, in the Makefile's
system-deps): the 2.6 branch, which .env pins for the image. A missing program fails the
test with how to install it; it never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.process import LoggedProcess
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = ROOT / "haproxy" / "haproxy.cfg"
RESOLV_CONF_LINE = "parse-resolv-conf"
SIMULATOR_NAME = "simulator"


def program(name: str, package: str) -> str:
    """The path of a Debian program (root's PATH has /usr/sbin, a user's may not)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            f"{name} is not installed: `apt-get install {package}` (or `make system-deps`)",
            pytrace=False,
        )
    return found


def haproxy_binary() -> str:
    return program("haproxy", "haproxy")


def haproxy_branch(binary: str) -> str:
    """``major.minor`` of the installed HAProxy (``2.6`` for Debian 12's 2.6.12)."""
    output = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version (\d+\.\d+)\.", output)
    assert match, output
    return match.group(1)


def loopback_config(nameserver: str) -> str:
    """haproxy.cfg with Docker's resolver replaced by ``nameserver`` (``host:port``)."""
    text = HAPROXY_CONFIG.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    matches = [i for i, line in enumerate(lines) if line.strip() == RESOLV_CONF_LINE]
    assert len(matches) == 1, f"haproxy.cfg: expected one {RESOLV_CONF_LINE!r} line"
    (index,) = matches
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = f"{indent}nameserver test {nameserver}\n"
    return "".join(lines)


def _get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


class DnsServer:
    """dnsmasq on 127.0.0.1:``port`` answering ``simulator`` with ``addresses``; change them
    with :meth:`set_addresses` (dnsmasq re-reads its hosts file on SIGHUP), as replicas come
    and go under ``--scale``."""

    def __init__(self, workdir: Path, addresses: Sequence[str]) -> None:
        self._binary = program("dnsmasq", "dnsmasq-base")
        self._hosts = workdir / "dns-hosts"
        self._process = LoggedProcess(workdir / "dnsmasq.log")
        self.port = free_port()
        self._write(addresses)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self, addresses: Sequence[str]) -> None:
        self._hosts.write_text("".join(f"{address} {SIMULATOR_NAME}\n" for address in addresses))

    def set_addresses(self, addresses: Sequence[str]) -> None:
        self._write(addresses)
        assert self._process.started
        self._process.send_signal(signal.SIGHUP)

    def start(self) -> None:
        command = [
            self._binary,
            "--keep-in-foreground",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",  # no upstream: it answers for `simulator` and nothing else
            "--no-hosts",
            f"--addn-hosts={self._hosts}",
            "--pid-file=",
            "--log-facility=-",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")  # stay root rather than switch to a missing user
        self._process.spawn(command)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self._process.running:
                break
            if "read " in self._process.log_tail(chars=1 << 20):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self._process.log_tail(2000)

    def stop(self) -> None:
        self._process.stop()


class HAProxyProcess:
    """``haproxy -db`` with the rendered haproxy.cfg (see the module's docstring)."""

    def __init__(self, workdir: Path, nameserver: str, simulator_port: int) -> None:
        self._binary = haproxy_binary()
        self._config = workdir / "haproxy.cfg"
        self._config.write_text(loopback_config(nameserver), encoding="utf-8")
        self._process = LoggedProcess(workdir / "haproxy.log")
        self.frontend_port = free_port()
        self.stats_port = free_port()
        self.environment = {
            "FRONTEND_BIND": f"127.0.0.1:{self.frontend_port}",
            "STATS_BIND": f"127.0.0.1:{self.stats_port}",
            "SIMULATOR_ADDRESS": f"{SIMULATOR_NAME}:{simulator_port}",
        }

    @property
    def url(self) -> str:
        """The frontend the generator and the shim send to (``lb:8080`` in the stack)."""
        return f"http://127.0.0.1:{self.frontend_port}"

    @property
    def stats_address(self) -> str:
        return f"127.0.0.1:{self.stats_port}"

    def check(self) -> None:
        """``haproxy -c``: the rendered file parses, with this process's variables."""
        done = subprocess.run(
            [self._binary, "-c", "-f", str(self._config)],
            env={**os.environ, **self.environment},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        self._process.spawn(
            [self._binary, "-db", "-f", str(self._config)], env={**os.environ, **self.environment}
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.running:
            try:
                if _get(f"http://{self.stats_address}/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not start:\n{self.log_tail()}")

    def metrics(self) -> str:
        """HAProxy's own Prometheus exposition (frontend stats, ``/metrics``)."""
        return _get(f"http://{self.stats_address}/metrics", timeout=5.0)[1]

    @property
    def pid(self) -> int:
        return self._process.pid

    def log_tail(self) -> str:
        return self._process.log_tail()

    def stop(self) -> None:
        self._process.stop()
