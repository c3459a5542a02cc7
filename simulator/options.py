"""Per-request pipeline options, carried from the traffic generator to the service.

A ``RequestPayload`` configures the pipeline for the requests it generates. Those requests
travel over real HTTP, so the options ride in one compact header that the service parses
without touching JSON, for example
``x-failure-lab-options: retries=1;rl=10;algo=token_bucket;cache=1;ttl=30;dbl=50``.
A request without the header (curl, wrk) gets the defaults below. Numbers are finite, at
least 0 and at most the bounds of the payload fields they carry (``OptionBounds``, from the
same ``SettingBound`` declarations), so a header cannot ask for more than a body can. The
service answers
every request with the number of database retries it made in ``RETRIES_HEADER``, which is how
the generator counts retries it cannot see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, get_args

from failure_lab.bounds import bound_of
from failure_lab.control import RateLimitAlgorithm, RequestPayload
from failure_lab.settings import Settings

HEADER: Final = "x-failure-lab-options"
RETRIES_HEADER: Final = "x-failure-lab-retries"
ALGORITHMS: Final[tuple[str, ...]] = get_args(RateLimitAlgorithm)
SHOWN: Final = 40
"""Characters of a refused value quoted back."""
CARRIES: Final = MappingProxyType({"rl": "rate_limiting", "ttl": "cache_ttl", "dbl": "db_latency"})
"""The numeric keys of the header, and the payload field each carries."""


class InvalidOptions(ValueError):
    """The options header could not be parsed; the service answers 400."""


@dataclass(frozen=True, slots=True)
class OptionBounds:
    """The largest value of each numeric key, with the variable that raises it."""

    caps: Mapping[str, tuple[float, str]]

    @classmethod
    def from_settings(cls, settings: Settings) -> OptionBounds:
        bounds = {key: bound_of(RequestPayload, name) for key, name in CARRIES.items()}
        return cls({key: (b.cap(settings), b.env) for key, b in bounds.items()})

    def number(self, key: str, value: str) -> float:
        """The number in ``value``: finite, >= 0 and within the bound of ``key``."""
        number = float(value)
        if not (math.isfinite(number) and number >= 0):
            raise ValueError("expected a finite number >= 0")
        cap, env = self.caps[key]
        if number > cap:
            raise ValueError(f"{number:g} exceeds the cap of {cap:g}; raise it with {env}")
        return number


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    retries_enabled: bool = True
    rate_limit: float = 0.0
    algorithm: RateLimitAlgorithm = "token_bucket"
    cache_enabled: bool = True
    cache_ttl: float = 30.0
    db_latency_ms: float = 0.0

    @classmethod
    def from_payload(cls, payload: RequestPayload) -> PipelineOptions:
        return cls(
            retries_enabled=payload.retries_enabled,
            rate_limit=payload.rate_limiting,
            algorithm=payload.rate_limiting_algo,
            cache_enabled=payload.cache_enabled,
            cache_ttl=payload.cache_ttl,
            db_latency_ms=payload.db_latency,
        )

    def encode(self) -> str:
        return (
            f"retries={int(self.retries_enabled)};rl={self.rate_limit:g};algo={self.algorithm};"
            f"cache={int(self.cache_enabled)};ttl={self.cache_ttl:g};dbl={self.db_latency_ms:g}"
        )

    @classmethod
    def decode(cls, header: str | None, bounds: OptionBounds) -> PipelineOptions:
        """Parse the header; absent keys keep their defaults, anything malformed or out of
        ``bounds`` is refused."""
        options = cls()
        if not header:
            return options
        for item in header.split(";"):
            key, sep, value = item.strip().partition("=")
            if not sep:
                raise InvalidOptions(f"{HEADER}: expected key=value, got {item!r}")
            try:
                options = _apply(options, key, value, bounds)
            except ValueError as exc:
                raise InvalidOptions(f"{HEADER}: {key}={value[:SHOWN]!r}: {exc}") from None
        return options


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return value == "1"


def _apply(options: PipelineOptions, key: str, value: str, bounds: OptionBounds) -> PipelineOptions:
    match key:
        case "retries":
            return replace(options, retries_enabled=_flag(value))
        case "rl":
            return replace(options, rate_limit=bounds.number(key, value))
        case "algo":
            if value not in ALGORITHMS:
                raise ValueError(f"expected one of {', '.join(ALGORITHMS)}")
            return replace(options, algorithm=value)  # type: ignore[arg-type]
        case "cache":
            return replace(options, cache_enabled=_flag(value))
        case "ttl":
            return replace(options, cache_ttl=bounds.number(key, value))
        case "dbl":
            return replace(options, db_latency_ms=bounds.number(key, value))
    raise ValueError("unknown key (known: retries, rl, algo, cache, ttl, dbl)")
