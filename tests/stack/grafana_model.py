"""Dashboards read through Grafana's foundation SDK, the typed models Grafana generates from
its own schema, and written back: what the models do not know is lost on the way.

Grafana itself cannot run here, so this is how a misspelt option, field-config key or query
field is caught before a user sees an empty panel: every key of a dashboard (panels, their
options and field config, Prometheus and Jaeger queries) must survive the round trip.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from grafana_foundation_sdk.cog import plugins


def _plain(value: Any) -> Any:
    """The JSON the SDK writes for a model (its ``to_json`` is shallow)."""
    return json.loads(json.dumps(value, default=lambda model: model.to_json()))


def round_trip(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as the SDK's models read and write it."""
    plugins.register_default_plugins()
    with warnings.catch_warnings():  # the v1 model is the one provisioned files use
        warnings.simplefilter("ignore", DeprecationWarning)
        from grafana_foundation_sdk.models.dashboard import Dashboard

        written: dict[str, Any] = _plain(Dashboard.from_json(json.loads(json.dumps(dashboard))))
    return written


def lost_fields(original: Any, written: Any, path: str = "") -> list[str]:
    """Paths of keys in ``original`` that ``written`` no longer has, or whose value changed."""
    if isinstance(original, dict) and isinstance(written, dict):
        lost: list[str] = []
        for key, value in original.items():
            where = f"{path}/{key}"
            lost += (
                [f"{where}: unknown to Grafana's models"]
                if key not in written
                else lost_fields(value, written[key], where)
            )
        return lost
    if isinstance(original, list) and isinstance(written, list) and len(original) == len(written):
        return [
            line
            for index, (a, b) in enumerate(zip(original, written, strict=True))
            for line in lost_fields(a, b, f"{path}[{index}]")
        ]
    return [] if original == written else [f"{path}: {original!r:.60} read as {written!r:.60}"]
