"""What one request carries through the stages of the pipeline, and what it answers.

The stages (admission, cache, database) each need the same few things about the request in
hand: its server span, its route, its options, the failure config it runs under and the
disruptions acting on it; and each leaves results the answer reports (retries made, what the
cache said, the row). One ``RequestScope`` per request holds them all, so a stage's signature
stays ``(what it works on, scope)`` and adding a field touches no call site. It is the one
allocation the pipeline adds per request; a slotted dataclass makes it cheap to build and read.

Kept apart from the pipeline so the stages can import it while the pipeline imports them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from failure_lab.control import FailureConfig
from simulator.disruption_scope import DisruptionScope
from simulator.options import PipelineOptions

Sleep = Callable[[float], Awaitable[None]]
"""How the stages that wait do it: ``asyncio.sleep``, or a fake clock's in tests."""


@dataclass(slots=True)
class Outcome:
    """What the service answers, and the labels its metrics and traces carry."""

    status: int
    body: bytes
    outcome: str
    retries: int = 0
    cache: str = "off"
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class RequestScope:
    """One request on its way through the stages.

    ``disruption`` is None unless a disruption is active on the route, so a stage pays one
    attribute check for it. ``config`` is read only once the request is admitted (with
    Redis it is a round trip a refused request should not pay), so it is unset until then.
    """

    server_span: Span
    route: str
    options: PipelineOptions
    disruption: DisruptionScope | None
    config: FailureConfig = field(init=False, repr=False)
    retries: int = 0
    cache: str = "off"
    row: Any = None

    def answer(self, status: int, body: bytes, outcome: str) -> Outcome:
        """The answer, with the retries made and the cache result so far."""
        return Outcome(status, body, outcome, retries=self.retries, cache=self.cache)


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def detail_json(message: str) -> bytes:
    return encode_json({"detail": message})
