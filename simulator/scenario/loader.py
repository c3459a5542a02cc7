"""Reading a scenario file, with every problem reported as ``file:line: field: message``.

A scenario file is edited by hand, so a mistake must point at its line: pydantic says
*which field* is wrong (``phases[1].duration``) but not where it is in the file. The YAML
is therefore composed into nodes first (``SafeLoader`` nodes keep their ``start_mark``),
checked for duplicate keys (PyYAML would silently keep the last one), then constructed
and validated; each validation error's location is walked back through the nodes to the
line of the key or item it names. Every failure, from a missing file to a broken
cross-field rule, becomes one ``ScenarioFileError``, never a traceback, listing every
problem found in one pass: field errors, all the cross-field rules (``rules.py``), the
server's caps when they are known, and ``--set`` overrides that lead nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from failure_lab.settings import Settings
from simulator.scenario.overrides import OverrideError, apply_overrides
from simulator.scenario.rules import RuleError, RuleErrors, cap_problems, name_problems
from simulator.scenario.spec import NAME_PATTERN, Scenario

MAX_PROBLEMS: Final = 20
EXTENSION: Final = "x-"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_SCALARS: Final = (str, int, float, bool, type(None))
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: 1-based ``line`` (None: the file as a whole), the
    field path such as ``phases[1].duration`` ("" for none), and what is wrong."""

    line: int | None
    path: str
    message: str


class ScenarioFileError(Exception):
    """A scenario file that cannot be used; ``str()`` has one line per problem."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(sorted(problems, key=lambda p: p.line or 0))
        super().__init__(self._render())

    def _render(self) -> str:
        lines = []
        for problem in self.problems[:MAX_PROBLEMS]:
            where = self.source if problem.line is None else f"{self.source}:{problem.line}"
            field = f"{problem.path}: " if problem.path else ""
            lines.append(f"{where}: {field}{problem.message}")
        if len(self.problems) > MAX_PROBLEMS:
            lines.append(f"{self.source}: ... and {len(self.problems) - MAX_PROBLEMS} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return str(self.args[0])


ROUTE_HINT: Final = (
    "route keys contain { and }, which YAML reads as a mapping inside [...]: quote each one "
    '("GET /api/v1/users/{id}") or write one per line as - GET /api/v1/users/{id}'
)


def load_scenario(
    path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    caps: Settings | None = None,
) -> Scenario:
    """The scenario in the file at ``path``, with ``overrides`` applied and checked against
    the ``caps`` of a server with those settings; raises ``ScenarioFileError``."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ScenarioFileError(source, [Problem(None, "", "no such file")]) from None
    except IsADirectoryError:
        raise ScenarioFileError(
            source, [Problem(None, "", "is a directory, not a scenario file")]
        ) from None
    except OSError as exc:
        raise ScenarioFileError(
            source, [Problem(None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioFileError(
            source, [Problem(line, "", f"not UTF-8 text (byte {exc.start} cannot be decoded)")]
        ) from None
    return parse_scenario(text, source, overrides=overrides, caps=caps)


def parse_scenario(
    text: str,
    source_name: str = "<scenario>",
    *,
    overrides: Sequence[str] = (),
    caps: Settings | None = None,
) -> Scenario:
    """The scenario in ``text``; ``source_name`` names it in messages."""
    root, data = _read_yaml(text, source_name)
    # Top-level ``x-`` keys are the file's own (anchors to reuse), as in compose files.
    data = {key: value for key, value in data.items() if not str(key).startswith(EXTENSION)}
    try:
        overridden = apply_overrides(data, overrides)
    except OverrideError as exc:
        raise ScenarioFileError(source_name, [Problem(None, "", str(exc))]) from None
    problems: list[Problem] = []
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems += _problems(root, error)
        problems += _lenient_names(root, data)
    if caps is not None:
        problems += [_rule(root, (), error) for error in cap_problems(data, caps)]
    if problems or scenario is None:
        raise ScenarioFileError(source_name, _marked(_unique(problems), overridden))
    return scenario


def _lenient_names(root: MappingNode, data: dict[Any, Any]) -> list[Problem]:
    """Names and check phases read from the raw data: reported even when a phase failed."""
    phases, checks = data.get("phases"), data.get("checks")
    names = (
        [p.get("name") for p in phases if isinstance(p, dict)] if isinstance(phases, list) else []
    )
    wanted = (
        [c.get("phase", "all") for c in checks if isinstance(c, dict)]
        if isinstance(checks, list)
        else []
    )
    return [_rule(root, (), error) for error in name_problems(names, wanted)]


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _marked(problems: list[Problem], overridden: list[tuple[str | int, ...]]) -> list[Problem]:
    """A problem with a value given by ``--set`` says so (its line is the file's)."""
    paths = {_path(loc) for loc in overridden}
    return [
        Problem(p.line, p.path, f"{p.message} (set with --set)") if p.path in paths else p
        for p in problems
    ]


def _read_yaml(text: str, source: str) -> tuple[MappingNode, dict[Any, Any]]:
    """The top-level mapping node and the data constructed from it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ScenarioFileError(
                source, [Problem(1, "", "the file is empty; a scenario needs name and phases")]
            )
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else "a single value"
            raise ScenarioFileError(
                source,
                [
                    Problem(
                        _line(root),
                        "",
                        f"the top level must be a mapping of fields (name, phases, ...), "
                        f"not {kind}",
                    )
                ],
            )
        duplicates = list(_duplicate_keys(root, (), set()))
        if duplicates:
            raise ScenarioFileError(source, duplicates)
        data: dict[Any, Any] = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise ScenarioFileError(source, [_yaml_problem(exc)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ScenarioFileError(
            source, [Problem(line, "", f"YAML: {exc.reason} (character {exc.character!r})")]
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioFileError(source, [Problem(None, "", f"YAML: {exc}")]) from None
    except RecursionError:
        raise ScenarioFileError(source, [Problem(None, "", "YAML nested too deeply")]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # Constructors of explicitly tagged values (``!!int abc``) raise plain errors.
        raise ScenarioFileError(source, [Problem(None, "", f"YAML: bad value: {exc}")]) from None
    finally:
        loader.dispose()
    return root, data


def _yaml_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        context_mark = exc.context_mark
        near = "" if context_mark is None else f" at line {context_mark.line + 1}"
        if exc.problem.startswith("but "):  # "expected X ... but found Y"
            message = f"{exc.context}{near}, {exc.problem}"
        else:
            message = f"{exc.problem} ({exc.context}{near})"
    line = None if mark is None else mark.line + 1
    snippet = "" if mark is None or mark.buffer is None else mark.buffer.splitlines()[mark.line]
    if "/{" in snippet:
        message += f"; {ROUTE_HINT}"
    return Problem(line, "", f"YAML syntax: {message}")


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _duplicate_keys(node: Node, loc: Loc, seen: set[int]) -> Iterable[Problem]:
    """Keys given twice in one mapping, anywhere in the document (aliases visited once)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[str, Node] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag != _MERGE_TAG:
                earlier = first.get(key.value)
                if earlier is not None:
                    yield Problem(
                        _line(key),
                        _path((*loc, key.value)),
                        f"duplicate key (first given at line {_line(earlier)})",
                    )
                else:
                    first[key.value] = key
            name = key.value if isinstance(key, ScalarNode) else "?"
            yield from _duplicate_keys(value, (*loc, name), seen)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index), seen)


def _problems(root: MappingNode, error: ErrorDetails) -> list[Problem]:
    loc: Loc = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RuleErrors):
        return [_rule(root, loc, rule) for rule in cause.errors]
    if isinstance(cause, RuleError):
        return [_rule(root, loc, cause)]
    return [Problem(_locate(root, loc), _path(loc), _explain(error, loc))]


def _rule(root: MappingNode, loc: Loc, rule: RuleError) -> Problem:
    where = loc + rule.loc
    return Problem(_locate(root, where), _path(where), str(rule))


def _explain(error: ErrorDetails, loc: Loc) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        return "unknown field" + (f"; known fields: {', '.join(known)}" if known else "")
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NAME_PATTERN:
        message = (
            "use lowercase letters, digits, '-' and '_', starting with a letter or a digit, "
            "at most 63 characters"
        )
    value = error.get("input")
    if kind != "missing" and isinstance(value, _SCALARS):
        shown = repr(value)
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return message


def _locate(root: MappingNode, loc: Loc) -> int:
    """The line of the deepest node ``loc`` leads to: a key's line for a mapping entry,
    an item's for a list item, the enclosing mapping's for a missing field."""
    node: Node = root
    line = _line(root)
    for part in loc:
        if isinstance(node, MappingNode) and isinstance(part, str):
            entry = _entry(node, part)
            if entry is None:
                break
            key, node = entry
            line = _line(key)
        elif isinstance(node, SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = _line(node)
        else:
            break
    return line


def _entry(mapping: MappingNode, name: str) -> tuple[Node, Node] | None:
    """The key and value nodes of ``name``; the last one wins, as in construction (which
    also flattens ``<<`` merges into the mapping, keeping the merged nodes' lines)."""
    for key, value in reversed(mapping.value):
        if isinstance(key, ScalarNode) and key.tag != _MERGE_TAG and key.value == name:
            return key, value
    for key, value in mapping.value:
        if key.tag == _MERGE_TAG:
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode) and (found := _entry(source, name)):
                    return found
    return None


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: Loc) -> list[str] | None:
    """The field names of the model that ``loc`` (a path of field names) leads to."""
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return None if model is None else list(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
