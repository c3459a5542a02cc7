"""The one boundary between the shim and its backends: httpx errors and time bounds mapped.

Every call the shim makes to Prometheus, Jaeger or the simulator runs inside
:func:`backend_call`: one timeout for the whole call (however many HTTP requests it makes),
and whatever httpx raises, or the bound running out, becomes the project's own
``SourceTimeout`` or ``SourceUnavailable`` naming the backend. The HTTP clients themselves
carry no timeout of their own, so no second bound can fire first with another message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from exporter.errors import SourceError, SourceTimeout, SourceUnavailable


@asynccontextmanager
async def backend_call(backend: str, where: str, timeout: float) -> AsyncIterator[None]:
    """Run the block as one call of ``backend`` at ``where``, bounded by ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except SourceError:
        raise
    except (TimeoutError, httpx.TimeoutException):
        raise SourceTimeout(backend, f"no answer from {where} within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = str(exc) or type(exc).__name__
        raise SourceUnavailable(backend, f"cannot reach {where}: {detail}") from exc
