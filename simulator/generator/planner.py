"""What the generator sends: a read-heavy rotation over the simulated user API.

Six reads of one user out of ten, two list reads, one create and one update: reads dominate so
the service's cache has something to do, while writes keep the traffic realistic. The cycle is
fixed (not random) so short runs have a predictable mix; ids and bodies come from the caller's
``random.Random`` so a seeded run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, get_args

from failure_lab.control import EndpointKey

GET_USER: Final = "GET /api/v1/users/{id}"
LIST_USERS: Final = "GET /api/v1/users"
CREATE_USER: Final = "POST /api/v1/users"
UPDATE_USER: Final = "PATCH /api/v1/users/{id}"
ERROR: Final = "GET /api/v1/users/error"

# The same keys, in the same order, as the API's ``EndpointKey``.
ENDPOINTS: Final[tuple[str, ...]] = get_args(EndpointKey)

# The default rotation: 6 x get, 2 x list, 1 x create, 1 x update, interleaved.
DEFAULT_CYCLE: Final[tuple[str, ...]] = (
    GET_USER,
    LIST_USERS,
    GET_USER,
    GET_USER,
    CREATE_USER,
    GET_USER,
    LIST_USERS,
    GET_USER,
    GET_USER,
    UPDATE_USER,
)

_FIRST_NAMES: Final = (
    "Ada", "Alan", "Barbara", "Edsger", "Frances", "Grace", "John", "Katherine",
    "Leslie", "Margaret", "Niklaus", "Radia", "Tony", "Barbara", "Donald", "Ken",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Lovelace", "Turing", "Liskov", "Dijkstra", "Allen", "Hopper", "Backus", "Johnson",
    "Lamport", "Hamilton", "Wirth", "Perlman", "Hoare", "Knuth", "Thompson", "Ritchie",
)  # fmt: skip
_DOMAINS: Final = ("example.com", "example.org", "example.net")


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request to send: ``route`` is the template (a bounded label), ``path`` the URL path."""

    method: str
    route: str
    path: str
    json: dict[str, Any] | None = None

    @property
    def endpoint(self) -> str:
        """The route key, e.g. ``GET /api/v1/users/{id}``."""
        return f"{self.method} {self.route}"


class RequestSource(Protocol):
    """Hands out the next request to send."""

    def next(self) -> PlannedRequest: ...


class RequestPlanner:
    """Hands out the next request of the rotation; ``endpoints`` restricts it to a subset."""

    def __init__(
        self,
        users: int,
        rng: random.Random,
        endpoints: Sequence[str] | None = None,
        *,
        error_rate: float = 0.5,
    ) -> None:
        if users < 1:
            raise ValueError("users must be >= 1")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be within 0..1")
        self._users = users
        self._rng = rng
        self._error_rate = error_rate
        self._cycle = _cycle(endpoints)
        self._position = 0

    @property
    def cycle(self) -> tuple[str, ...]:
        return self._cycle

    def next(self) -> PlannedRequest:
        endpoint = self._cycle[self._position]
        self._position = (self._position + 1) % len(self._cycle)
        return self._build(endpoint)

    def _build(self, endpoint: str) -> PlannedRequest:
        method, route = endpoint.split(" ", 1)
        if endpoint == GET_USER:
            return PlannedRequest(method, route, f"/api/v1/users/{self._user_id()}")
        if endpoint == UPDATE_USER:
            return PlannedRequest(
                method, route, f"/api/v1/users/{self._user_id()}", self._patch_body()
            )
        if endpoint == CREATE_USER:
            name, email = self._person()
            return PlannedRequest(method, route, route, {"name": name, "email": email})
        if endpoint == ERROR:
            return PlannedRequest(method, route, f"{route}?errorRate={self._error_rate:g}")
        return PlannedRequest(method, route, route)

    def _user_id(self) -> int:
        return self._rng.randint(1, self._users)

    def _person(self) -> tuple[str, str]:
        first = self._rng.choice(_FIRST_NAMES)
        last = self._rng.choice(_LAST_NAMES)
        number = self._rng.randint(1, 9999)
        email = f"{first}.{last}{number}@{self._rng.choice(_DOMAINS)}".lower()
        return f"{first} {last}", email

    def _patch_body(self) -> dict[str, Any]:
        name, email = self._person()
        match self._rng.randrange(3):
            case 0:
                return {"name": name}
            case 1:
                return {"email": email}
            case _:
                return {"name": name, "email": email}


def _cycle(endpoints: Sequence[str] | None) -> tuple[str, ...]:
    if endpoints is None:
        return DEFAULT_CYCLE
    if isinstance(endpoints, str):
        raise TypeError("endpoints must be a sequence of route keys, not a string")
    unknown = [name for name in endpoints if name not in ENDPOINTS]
    if unknown:
        raise ValueError(
            f"unknown endpoint(s) {', '.join(map(repr, unknown))}; known: {', '.join(ENDPOINTS)}"
        )
    if not endpoints:
        raise ValueError(f"endpoints must not be empty; known: {', '.join(ENDPOINTS)}")
    wanted = set(endpoints)
    cycle = tuple(name for name in DEFAULT_CYCLE if name in wanted)
    if ERROR in wanted:
        cycle += (ERROR,)
    return cycle
