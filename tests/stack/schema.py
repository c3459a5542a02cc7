"""Grafana's JSON schemas (``../shared/schemas``), checked with ``jsonschema``'s draft-07 validator.

``Validator`` keeps the shape the dashboard tests use: ``errors(instance)`` against the whole
schema, or ``errors(instance, definition("Options"))`` against one of its definitions, each
error a line naming the path and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    """``grafana-<name>.jsonschema.json`` from the shared schemas folder."""
    path = SCHEMAS / f"grafana-{name}.jsonschema.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


class Validator:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = dict(document)

    def definition(self, name: str) -> Mapping[str, Any]:
        return {"$ref": f"#/definitions/{name}"}

    def errors(self, instance: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
        target = (
            self._document
            if schema is None
            else {**schema, "definitions": self._document.get("definitions", {})}
        )
        validator = Draft7Validator(target)
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
            + (f" ({error.validator})" if error.validator in ("oneOf", "anyOf") else "")
            for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        ]
