"""The bundled scenarios, found by name wherever failure-lab is installed.

The scenario files live inside the package (``simulator/scenario/bundled``) and are read with
``importlib.resources``, so ``failure-lab demo`` and ``failure-lab run retry-storm`` work from
any directory after ``pip install``, from a wheel, ``uv tool`` or the Docker image, not only
from a checkout. ``run`` takes a file when one exists at the path given, a bundled name
otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Final

import yaml

PACKAGE: Final = "simulator.scenario.bundled"
SUFFIX: Final = ".yaml"


@dataclass(frozen=True, slots=True)
class Bundled:
    name: str
    description: str
    resource: Traversable

    def text(self) -> str:
        return self.resource.read_text(encoding="utf-8")


class UnknownScenario(LookupError):
    """Neither a file at that path nor a bundled scenario of that name."""

    def __init__(self, given: str, names: list[str]) -> None:
        super().__init__(
            f"{given!r} is neither a file nor a bundled scenario; bundled: {', '.join(names)}"
        )


def bundled() -> dict[str, Bundled]:
    """Every bundled scenario by name, sorted."""
    found: dict[str, Bundled] = {}
    for resource in sorted(resources.files(PACKAGE).iterdir(), key=lambda r: r.name):
        if resource.name.endswith(SUFFIX):
            name = resource.name.removesuffix(SUFFIX)
            found[name] = Bundled(name, _description(resource), resource)
    return found


@contextlib.contextmanager
def scenario_path(given: str) -> Iterator[Path]:
    """The file to run: ``given`` if it is a path that exists, else the bundled scenario of
    that name (``retry-storm`` or ``retry-storm.yaml``); ``UnknownScenario`` otherwise."""
    path = Path(given)
    if path.exists():
        yield path
        return
    catalog = bundled()
    entry = catalog.get(given.removesuffix(SUFFIX))
    if entry is None:
        raise UnknownScenario(given, list(catalog))
    with resources.as_file(entry.resource) as file:
        yield file


def _description(resource: Traversable) -> str:
    """The first line of the file's ``description`` field, or of its opening comment."""
    text = resource.read_text(encoding="utf-8")
    with contextlib.suppress(yaml.YAMLError):
        document = yaml.safe_load(text)
        if isinstance(document, dict) and isinstance(document.get("description"), str):
            return str(document["description"]).strip().splitlines()[0]
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
