"""Running an app under uvicorn with a shutdown that loses nothing, and load it cannot serve
refused at the door.

The app runs on the loop its config names (uvloop), and an app that brings an admission
(:mod:`simulator.shedding`) is asked it by uvicorn's protocol itself as each request arrives,
before the request waits for its turn on the event loop.

Once the app has started, its long-lived objects (metric children, buckets, connection
pools) are moved out of the garbage collector's view with ``gc.freeze()``: otherwise every
full collection walks them all and pauses the event loop for tens of milliseconds, which
shows up as late sends in the generator and as tail latency in the service. What it holds
later (connections, the span store, the metric samples) is walked still, and with hundreds of
requests in flight most young objects are still alive when a collection comes, so each one
walks them all and promotes them: at CPython's default of 700 allocations a saturated process
ran a full collection every second or so (20 in 15 s at 4,000 connections, 60-95 ms each,
freeing nothing; docs/benchmarks.md, "Outside overload") and spent more CPU per request the
more connections it had (991 us at 256 connections per replica against 618 at 16; 661
against 545 with 50,000; "Saturation"). So the youngest generation's threshold is raised
after start-up to ``FAILURE_LAB_GC_YOUNG_THRESHOLD`` (50,000 by default).

On SIGINT/SIGTERM the traffic generator must stop before the server does: otherwise the
requests it is still sending to this very server would fail against a closed socket and
be counted as failures. So jobs are cancelled first, then uvicorn drains connections,
then the lifespan flushes spans and closes backends. The whole of it runs against one
deadline, ``grace`` seconds from the moment the server begins to stop
(:mod:`simulator.shutdown`): jobs and connections get what is left of it less the span
flush's reserve, and connections still open then are cancelled, so the process is gone
within the grace whatever its clients and its collector do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from simulator.shedding import Admission
from simulator.shutdown import Deadline


class Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        grace: float,
        *,
        own_signals: bool = True,
        gc_young_threshold: int | None = None,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._grace = grace
        self._own_signals = own_signals
        self._gc_young_threshold = gc_young_threshold

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """A server inside another program (``failure-lab run``) leaves Ctrl-C to it: the
        program stops its own work first, then ends the server by leaving ``serving``."""
        if self._own_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()
        if self._gc_young_threshold is not None:
            gc.set_threshold(self._gc_young_threshold, *gc.get_threshold()[1:])

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = Deadline.after(self._grace)
        runtime: Any = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            runtime.stop_by(deadline)
            await runtime.jobs.aclose(timeout=deadline.left_before_flush())
        feed: Any = getattr(self._app.state, "feed", None)
        if feed is not None:  # 1001 to every live-feed client before uvicorn's 1012
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.aclose(), timeout=deadline.left_before_flush())
        # uvicorn waits this long for open connections, then cancels their tasks (a float of
        # seconds, though uvicorn types the setting an int).
        left: Any = deadline.left_before_flush()
        self.config.timeout_graceful_shutdown = left
        await super().shutdown(sockets)


def admitting(admission: Admission) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, asking ``admission`` as it is about to make each
    request's task (:mod:`simulator.shedding`): the earliest the request is whole, before it
    waits for its turn on the event loop. A shed request gets no task: its answer is written
    at once, as uvicorn would write :meth:`Admission.refuse`'s, any body it has is discarded
    as it arrives, unread, and its connection is not read again for ``Retry-After`` seconds
    (while ``Admission.hold_connection``).

    (An admitted request leaves the count when its app returns; one whose task is cancelled
    before its first step, which only the shutdown does, never does: the count dies with the
    process.)"""

    class AdmittingProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            # uvicorn types the ASGI interface its own way, Starlette another: the same dicts.
            scope: Any = cycle.scope
            verdict = admission.arrive(scope)
            if verdict == "shed":
                self._answer_shed(cycle)
                return
            if verdict == "admitted":
                app = admission.counted(app)
            super()._start_asgi_task(cycle, app)

        def _answer_shed(self, cycle: RequestResponseCycle) -> None:
            head = [STATUS_LINE[503]]
            for name, value in (*cycle.default_headers, *admission.headers):
                head += (name, b": ", value, b"\r\n")
            if not cycle.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            if cycle.scope["method"] != "HEAD":
                head.append(admission.body)
            self.transport.write(b"".join(head))
            cycle.response_started = cycle.response_complete = True  # later body: discarded
            cycle.message_event.set()
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()
            if admission.hold_connection and not self.transport.is_closing():
                self.flow.pause_reading()
                self.loop.call_later(admission.retry_after_seconds, self._resume)

        def _resume(self) -> None:
            if not self.transport.is_closing():
                self.flow.resume_reading()

    return AdmittingProtocol


def server_for(
    app: FastAPI,
    host: str,
    port: int,
    grace: float,
    log_level: str = "info",
    *,
    own_signals: bool = True,
    gc_young_threshold: int | None = None,
) -> Server:
    admission: Admission | None = getattr(app.state, "admission", None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools" if admission is None else admitting(admission),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, int(grace)),  # the shutdown sets what is left
    )
    return Server(
        config, app, grace, own_signals=own_signals, gc_young_threshold=gc_young_threshold
    )


@asynccontextmanager
async def serving(
    app: FastAPI,
    port: int,
    *,
    grace: float,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    start_timeout: float = 10.0,
    own_signals: bool = True,
) -> AsyncIterator[str]:
    """Serve ``app`` in the running event loop until the block ends; yields its base URL.

    ``RuntimeError`` when it stops before it has started, or does not start within
    ``start_timeout`` seconds.
    """
    server = server_for(app, host, port, grace, log_level=log_level, own_signals=own_signals)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + start_timeout
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"the server on {host}:{port} stopped before it started")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server on {host}:{port} did not start within {start_timeout:g} s"
                )
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=grace + 15)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process may take it before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
