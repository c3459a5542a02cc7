"""Rules a scenario file must keep beyond its fields' types, each reported with its place.

pydantic stops a model at the first rule its validator raises, and never runs a parent's
validator once a child failed: a file with four cross-field mistakes then takes four
edit-run cycles. So every rule here returns (or raises together) all that it finds, as
``RuleError``s carrying the field they are about; the loader turns each into
``FILE:LINE: FIELD: MESSAGE``. ``name_problems`` and ``cap_problems`` read plain values so
the loader can also ask them of a file that did not validate. Caps are the server's:
``failure-lab validate`` and a run on the embedded default check them against
``failure_lab.settings.Settings`` (a fresh server's, or the environment's), so a file never
fails half-way through a run on a 422.
"""

from __future__ import annotations

from typing import Any, Final

from failure_lab.durations import parse_duration
from failure_lab.settings import Settings

WHOLE_RUN: Final = "all"
"""The phase name of a check on the whole run, and the key of whole-run figures."""


class RuleError(ValueError):
    """A rule across fields is broken; ``loc`` is where, relative to the model raising it.

    pydantic puts a model validator's error on the model itself; the loader appends ``loc``
    so the message names the field the rule is about, and that field's line.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class RuleErrors(ValueError):
    """Every rule a model breaks, raised at once so a file shows all its problems in one pass."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


def raise_all(errors: list[RuleError]) -> None:
    if errors:
        raise RuleErrors(errors)


def name_problems(phase_names: list[object], check_phases: list[object]) -> list[RuleError]:
    """Phase names that are reserved or repeated, and checks on phases that do not exist.

    Reads plain values, so the loader can also ask it of a file whose phases did not all
    validate: a check on a misspelt phase is then reported with the other problems.
    """
    errors: list[RuleError] = []
    seen: dict[object, int] = {}
    for index, name in enumerate(phase_names):
        if name == WHOLE_RUN:
            errors.append(
                RuleError(
                    ("phases", index, "name"), f'"{WHOLE_RUN}" is reserved for whole-run checks'
                )
            )
        elif name in seen:
            errors.append(
                RuleError(
                    ("phases", index, "name"),
                    f"duplicate phase name {name!r} (also phases[{seen[name]}])",
                )
            )
        else:
            seen[name] = index
    names = ", ".join(str(name) for name in seen)
    for index, phase in enumerate(check_phases):
        if phase != WHOLE_RUN and phase not in seen and isinstance(phase, str):
            errors.append(
                RuleError(
                    ("checks", index, "phase"),
                    f"unknown phase {phase!r}; phases are: {names} "
                    f'(or "{WHOLE_RUN}" for the whole run)',
                )
            )
    return errors


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None


def _over(
    loc: tuple[str | int, ...], value: Any, cap: float, what: str, setting: str
) -> list[RuleError]:
    number = _number(value)
    if number is None or number <= cap:
        return []
    return [RuleError(loc, f"{number:g} {what} exceeds the server's cap of {cap:g} ({setting})")]


def cap_problems(data: dict[str, Any], settings: Settings) -> list[RuleError]:
    """Values past the caps of a server with ``settings``, read leniently from the raw file."""
    errors: list[RuleError] = []
    retries = "FAILURE_LAB_MAX_RETRIES_CAP"
    for key in ("failure_config",):
        block = data.get(key)
        if isinstance(block, dict):
            errors += _over((key, "max_retries"), block.get("max_retries"),
                            settings.max_retries_cap, "retries", retries)  # fmt: skip
    phases = data.get("phases")
    for index, phase in enumerate(phases if isinstance(phases, list) else []):
        if not isinstance(phase, dict):
            continue
        at: tuple[str | int, ...] = ("phases", index)
        errors += _over((*at, "max_rps"), phase.get("max_rps"), settings.max_rps, "req/s",
                        "FAILURE_LAB_MAX_RPS")  # fmt: skip
        errors += _over((*at, "duration"), phase.get("duration"), settings.max_duration_seconds,
                        "s", "FAILURE_LAB_MAX_DURATION_SECONDS")  # fmt: skip
        block = phase.get("failure_config")
        if isinstance(block, dict):
            errors += _over((*at, "failure_config", "max_retries"), block.get("max_retries"),
                            settings.max_retries_cap, "retries", retries)  # fmt: skip
        disruptions = phase.get("disruptions")
        for number, planned in enumerate(disruptions if isinstance(disruptions, list) else []):
            if isinstance(planned, dict):
                errors += _over((*at, "disruptions", number, "duration"), planned.get("duration"),
                                settings.max_disruption_seconds, "s",
                                "FAILURE_LAB_MAX_DISRUPTION_SECONDS")  # fmt: skip
    return errors
