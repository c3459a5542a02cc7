"""A real headless Chromium (Debian's ``chromium``) to open a page the way a reader does.

``open_offline`` loads a ``file://`` URL with the network cut (a proxy that goes nowhere,
and the DevTools protocol's offline switch), and collects every console error, uncaught
exception and log error over the protocol's websocket while the page loads and settles;
``screenshot`` is Chromium's own ``--screenshot``. Each launch has its own profile folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.servers import free_port

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",  # the network is off (loopback, as always, bypasses it)
    "--hide-scrollbars",
]


def executable() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed, and the HTML report is tested in a real one: install "
            "it (Debian/Ubuntu: apt-get install chromium, or make system-deps) and run again",
            pytrace=False,
        )
    return found


@dataclass
class Loaded:
    errors: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _browser(profile: Path) -> AsyncIterator[str]:
    """A headless Chromium with the DevTools protocol on a free port; yields a page's
    websocket URL."""
    port = free_port()
    command = [executable(), *FLAGS, f"--user-data-dir={profile}",
               f"--remote-debugging-port={port}", "about:blank"]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    pages = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                    page = next((p for p in pages if p.get("type") == "page"), None)
                    if page is not None:
                        yield str(page["webSocketDebuggerUrl"])
                        return
                if time.monotonic() > deadline:
                    pytest.fail("chromium did not open its DevTools port within 30 s")
                await asyncio.sleep(0.2)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def open_offline(
    url: str, profile: Path, expressions: dict[str, str], *, loopback: bool = False
) -> Loaded:
    """Load ``url`` offline; every console error, and ``expressions`` evaluated after load.

    With ``loopback``, a server on this machine still answers (the page is served by one);
    everything else stays cut by the proxy that goes nowhere.
    """
    loaded = Loaded()
    ids = itertools.count(1)
    async with (
        _browser(profile) as socket_url,
        websockets.connect(socket_url, max_size=2**26) as ws,
    ):
        pending: dict[int, asyncio.Future[Any]] = {}

        async def send(method: str, **params: Any) -> Any:
            number = next(ids)
            pending[number] = asyncio.get_running_loop().create_future()
            await ws.send(json.dumps({"id": number, "method": method, "params": params}))
            return await asyncio.wait_for(pending[number], 60)

        load = asyncio.Event()

        async def listen() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if "id" in message and message["id"] in pending:
                    pending.pop(message["id"]).set_result(message.get("result"))
                    continue
                _collect(message, loaded.errors)
                if message.get("method") == "Page.loadEventFired":
                    load.set()

        listener = asyncio.create_task(listen())
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                await send(f"{domain}.enable")
            if not loopback:
                await send("Network.emulateNetworkConditions", offline=True, latency=0,
                           downloadThroughput=-1, uploadThroughput=-1)  # fmt: skip
            await send("Page.navigate", url=url)
            await asyncio.wait_for(load.wait(), 60)
            await asyncio.sleep(1.0)  # charts draw after load
            for name, expression in expressions.items():
                answer = await send("Runtime.evaluate", expression=expression, returnByValue=True)
                loaded.values[name] = answer["result"].get("value")
        finally:
            listener.cancel()
    return loaded


def _collect(message: dict[str, Any], errors: list[str]) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.exceptionThrown":
        errors.append(f"exception: {params['exceptionDetails'].get('text')}")
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(f"console.{params['type']}: {params.get('args')}")
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    elif method == "Network.loadingFailed":
        errors.append(f"network: {params.get('errorText')}")


def screenshot(url: str, out: Path, profile: Path, size: tuple[int, int]) -> Path:
    """Chromium's ``--screenshot`` of ``url`` at ``size`` (width, height)."""
    command = [executable(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000", url]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    return out
