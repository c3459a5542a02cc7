"""The simulated user API: the endpoints traffic is sent to.

Each handler turns HTTP into a ``Query`` and hands it to the pipeline; this module only
records the per-request metrics (endpoint = route template) and decorates the server span
that the ASGI instrumentation opened: it names it ``METHOD route`` and sets ``http.route``,
since the handler knows the route template without a second lookup. Responses are built
from bytes directly: the pipeline already holds the JSON, and cached bodies are served as
stored. These handlers are the hot path, so they read the runtime with the plain
``runtime_of`` rather than the ``RuntimeDep`` dependency of the control routes, whose
resolution by FastAPI costs each request measurable CPU (see ``simulator/api/deps.py``).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import APIRouter, Path, Request, Response
from fastapi import Query as QueryParam
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.convertors import IntegerConvertor, register_url_convertor

from failure_lab.openapi import errors
from simulator.api.deps import runtime_of
from simulator.database import Query
from simulator.options import HEADER, RETRIES_HEADER, InvalidOptions, PipelineOptions
from simulator.request_scope import Outcome, detail_json
from simulator.routes import ERROR, LIST, ONE
from simulator.runtime import Runtime

ERROR_STATUSES = (500, 502, 503, 504)


class UserIdConvertor(IntegerConvertor):
    """A user id in a path: at most 18 digits, so it is an int64 and never a number too long
    to convert; anything else (``error``, ``-1``, a thousand digits) is no route, 404."""

    regex = "[0-9]{1,18}"


MAX_USER_ID = 10**18 - 1
register_url_convertor("user_id", UserIdConvertor())  # before the routes that name it

router = APIRouter(prefix="/api/v1/users", tags=["simulated service"])
OPTIONS_HEADER = (
    f"Pipeline options ride in the header `{HEADER}` (docs/api.md), e.g. "
    "`retries=1;rl=10;algo=token_bucket;cache=1;ttl=30;dbl=50`; a malformed one, or a number "
    "past its bound, is 400."
)
ADMISSION = errors(
    (400, f"a malformed {HEADER} header, or a number in it past its bound"),
    (429, "the request's own rate limit, or a rate_limit_squeeze disruption"),
    (500, "an error_burst disruption failed the request (on purpose)"),
)
DATABASE = errors(
    (503, "the simulated database failed (injected) after the retries, or the circuit is open"),
    (504, "the simulated database timed out after the retries"),
)
FAILURES = {**ADMISSION, **DATABASE}
NO_USER = errors((404, "no such user"))


class User(BaseModel):
    id: int
    name: str
    email: str


class Ok(BaseModel):
    ok: bool


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=200)


class UserChanges(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("name", "email")
            ],
            "description": "name and/or email; at least one of them a string.",
        },
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, min_length=3, max_length=200)

    @model_validator(mode="after")
    def _something(self) -> UserChanges:
        if self.name is None and self.email is None:
            raise ValueError("give name and/or email")
        return self


async def _serve(
    request: Request, route: str, method: str, query: Query | None, error_rate: float = 0.0
) -> Response:
    runtime = runtime_of(request)
    started = time.perf_counter()
    span = trace.get_current_span()
    try:
        options = PipelineOptions.decode(request.headers.get(HEADER), runtime.option_bounds)
    except InvalidOptions as exc:
        outcome = Outcome(400, detail_json(str(exc)), "bad_request")
    else:
        try:
            if query is None:
                outcome = await _injected_error(runtime, options, error_rate, span)
            else:
                outcome = await runtime.pipeline.handle(query, route, options)
        except asyncio.CancelledError:  # the client left (failure_lab.guard cancels us)
            span.add_event("client.disconnected")
            _record(runtime, span, route, method, Outcome(499, b"", "client_closed"), started)
            raise
    request_id = _record(runtime, span, route, method, outcome, started)
    headers = {
        RETRIES_HEADER: str(outcome.retries),
        "x-request-id": request_id,
        **outcome.extra_headers,
    }
    return Response(outcome.body, outcome.status, headers=headers, media_type="application/json")


def _record(
    runtime: Runtime, span: trace.Span, route: str, method: str, outcome: Outcome, started: float
) -> str:
    """Count and time the request, name its span; returns its request id."""
    elapsed = time.perf_counter() - started
    context = span.get_span_context()
    request_id = str(uuid.UUID(int=context.trace_id))
    metrics = runtime.metrics
    metrics.requests.labels(route, method, str(outcome.status), outcome.outcome).inc()
    exemplar = {"trace_id": f"{context.trace_id:032x}"} if context.trace_flags.sampled else None
    metrics.request_duration.labels(route, method).observe(elapsed, exemplar=exemplar)
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attributes(
            {
                "http.route": route,
                "failure_lab.request_id": request_id,
                "failure_lab.outcome": outcome.outcome,
                "failure_lab.retry_count": outcome.retries,
                "failure_lab.cache": outcome.cache,
                "failure_lab.service_latency_ms": round(elapsed * 1000, 3),
            }
        )
    return request_id


async def _injected_error(
    runtime: Runtime, options: PipelineOptions, error_rate: float, span: trace.Span
) -> Outcome:
    pipeline = runtime.pipeline
    refused = await pipeline.admission.admit(pipeline.scope(ERROR, options, span))
    if refused is not None:
        return refused
    if runtime.rng.random() < error_rate:
        status = runtime.rng.choice(ERROR_STATUSES)
        span.add_event("injected_error", {"status_code": status, "error_rate": error_rate})
        return Outcome(
            status,
            detail_json(f"injected error {status} (errorRate={error_rate:g})"),
            "injected_error",
        )
    return Outcome(200, b'{"ok":true}', "success")


@router.get(
    "/error",
    response_model=Ok,
    responses={
        **ADMISSION,
        **errors(
            *(
                (status, "injected with probability errorRate (on purpose)")
                for status in (502, 503, 504)
            ),
            (500, "injected with probability errorRate, or an error_burst disruption (on purpose)"),
        ),
    },
    summary="Fails with 500/502/503/504 with probability errorRate",
    description=OPTIONS_HEADER,
)
async def error_endpoint(
    request: Request,
    errorRate: float = QueryParam(
        default=0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Probability of an injected 500, 502, 503 or 504 (chosen evenly).",
    ),
) -> Response:
    return await _serve(request, ERROR, "GET", None, errorRate)


@router.get(
    "",
    response_model=list[User],
    responses=FAILURES,
    summary="List users (the first page)",
    description=OPTIONS_HEADER,
)
async def list_users(request: Request) -> Response:
    return await _serve(request, LIST, "GET", Query("list"))


@router.post(
    "",
    status_code=201,
    response_model=User,
    responses=FAILURES,
    summary="Create a user",
    description=OPTIONS_HEADER,
)
async def create_user(request: Request, user: NewUser) -> Response:
    return await _serve(request, LIST, "POST", Query("create", body=user.model_dump()))


@router.get(
    "/{id:user_id}",
    response_model=User,
    responses={**FAILURES, **NO_USER},
    summary="Read one user (cached)",
    description=OPTIONS_HEADER,
)
async def get_user(
    request: Request,
    user_id: int = Path(
        alias="id", ge=0, le=MAX_USER_ID, description="Digits only; any other path is no route."
    ),
) -> Response:
    return await _serve(request, ONE, "GET", Query("get", user_id))


@router.patch(
    "/{id:user_id}",
    response_model=User,
    responses={**FAILURES, **NO_USER},
    summary="Change a user (invalidates the cache)",
    description=OPTIONS_HEADER,
)
async def update_user(
    request: Request,
    changes: UserChanges,
    user_id: int = Path(
        alias="id", ge=0, le=MAX_USER_ID, description="Digits only; any other path is no route."
    ),
) -> Response:
    return await _serve(
        request,
        ONE,
        "PATCH",
        Query("update", user_id, changes.model_dump(exclude_none=True)),
    )
