"""``failure-lab run``'s calls to the target, each answer parsed with the contract's model.

Kept apart from the runner so the runner reads as the steps of a run, and so the sampler and
the trace fetcher share one way of calling: a transport error or an error answer becomes
``RunFailed`` with a sentence saying which call and why (never an exception's repr), and an
answer that is not the contract's model fails where it was read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from failure_lab.contract import ErrorAnswer
from failure_lab.control import CircuitBreakerConfig, CircuitBreakerStatus, FailureConfig
from simulator.scenario.scrape import Scrape

STREAM_READ_TIMEOUT_S = 60.0
Answer = TypeVar("Answer", bound=BaseModel)


class RunFailed(Exception):
    """The run could not be carried out: the target is down, or refused a step."""


def transport_words(exc: httpx.HTTPError, target: str) -> str:
    """A transport error in words, for someone who may have mistyped ``--target``."""
    if isinstance(exc, httpx.ConnectError):
        return f"nothing answers at {target}: is `failure-lab serve` running there?"
    if isinstance(exc, httpx.TimeoutException):
        return f"{target} did not answer in time"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{target} closed the connection: is it failure-lab, and still running?"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"{target} is not an http:// or https:// URL"
    return f"{target}: {type(exc).__name__}: {exc}"


class ContractClient:
    def __init__(self, http: httpx.AsyncClient, target: str) -> None:
        self.http = http
        self.target = target

    async def call(
        self,
        answer: type[Answer],
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """The call's answer as the contract's model ``answer``; ``RunFailed`` otherwise."""
        try:
            response = await self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise RunFailed(f"{method} {path}: {transport_words(exc, self.target)}") from None
        if response.status_code >= 400:
            try:
                detail: object = ErrorAnswer.model_validate_json(response.content).detail
            except ValidationError:
                detail = response.text[:300]
            raise RunFailed(f"{method} {path} answered {response.status_code}: {detail}")
        return parsed(answer, response.content, f"{method} {path}")

    async def json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """A read that may fail without failing the run (sampling): None then."""
        try:
            response = await self.http.get(path, params=params)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def scrape(self) -> Scrape | None:
        """The target's ``/metrics``, if it is the simulator's registry."""
        try:
            response = await self.http.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            scrape = Scrape.parse(response.text)
        except ValueError:
            return None
        return scrape if scrape.from_simulator else None

    async def events(self, path: str) -> AsyncIterator[tuple[str, str]]:
        """(event, data) pairs of a Server-Sent Events stream until the server ends it."""
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
        async with self.http.stream("GET", path, timeout=timeout) as stream:
            if stream.status_code != 200:
                await stream.aread()
                raise RunFailed(f"GET {path} answered {stream.status_code}: {stream.text}")
            kind = "message"
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    yield kind, line.removeprefix("data:").strip()
                elif not line:
                    kind = "message"


def parsed(answer: type[Answer], data: str | bytes, call: str) -> Answer:
    try:
        return answer.model_validate_json(data)
    except ValidationError as exc:
        raise RunFailed(f"{call}: not a {answer.__name__} answer: {exc}") from None


async def current_state(client: ContractClient) -> tuple[FailureConfig, CircuitBreakerConfig]:
    """The failure config and breaker as they are, to put back after the run."""
    config = await client.call(FailureConfig, "GET", "/v1/config/failure")
    breaker = await client.call(CircuitBreakerStatus, "GET", "/v1/config/circuit-breaker")
    return config, breaker.config()


async def restore(
    client: ContractClient,
    job_id: str | None,
    disruption_ids: list[str],
    config: FailureConfig,
    breaker: CircuitBreakerConfig,
) -> None:
    """Best effort, every step tried: the service as it was before the run."""
    steps: list[tuple[str, str, Any]] = []
    if job_id is not None:
        steps.append(("POST", f"/v1/traffic/jobs/{job_id}/stop", None))
    steps += [("DELETE", f"/v1/disruptions/{d}", None) for d in disruption_ids]
    steps.append(("PUT", "/v1/config/failure", config.model_dump(mode="json")))
    steps.append(("PUT", "/v1/config/circuit-breaker", breaker.model_dump(mode="json")))
    for method, path, body in steps:
        with contextlib.suppress(httpx.HTTPError):
            await client.http.request(method, path, json=body)
