"""The stack-as-code files under test, read the way Prometheus and Grafana read them.

``prometheus/`` (config, rules) and ``grafana/`` (provisioning, dashboards) are loaded here once
for every test of this folder; the PromQL helpers turn a dashboard's query into what Grafana
would send (its variables substituted) and list the metric names an expression reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.backends import backend_binary

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
RUNBOOKS = PROMETHEUS_DIR / "RUNBOOKS.md"
GRAFANA_DIR = ROOT / "grafana"
PROVISIONING = GRAFANA_DIR / "provisioning"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
REPLICAS_DASHBOARD = DASHBOARDS_DIR / "replicas.json"
"""The per-replica view. Its HAProxy panels need the load balancer, so its queries run in
``test_load_balancer.py`` (replicas behind a real HAProxy), not in ``test_live_stack.py``."""

# What Grafana puts in place of its interval variables; 15 s is $__rate_interval for a
# 1 s scrape interval at Grafana's default resolution, and long enough for a few scrapes.
GRAFANA_VARIABLES = {
    "__rate_interval": "15s",
    "__interval": "5s",
    "__interval_ms": "5000",
    "__range": "1m",
    "__range_s": "60",
    "__range_ms": "60000",
}
PROMETHEUS_BUILTINS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "atan2", "inf", "nan", "Inf", "NaN"}
)


def promtool() -> str:
    """The pinned ``promtool`` (``make backends``); an unbuilt one fails the test with how to
    build it."""
    return str(backend_binary("promtool"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> list[dict[str, Any]]:
    """Every rule of every group of ``prometheus/rules/*.yml``."""
    return [
        rule
        for path in rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in recording_rules()}


# --- dashboards ----------------------------------------------------------------------------


def dashboard_paths() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels kept inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True, slots=True)
class PromQuery:
    """One PromQL expression a dashboard runs: a panel target or an annotation.

    Grafana runs an annotation's expression as a range query over the dashboard's time
    range (each step with a value above 0 is an event, steps close together one region),
    so ``annotation`` queries are checked over a range, not at one instant.
    """

    dashboard: str
    where: str
    expr: str
    exemplar: bool = False
    annotation: bool = False

    @property
    def promql(self) -> str:
        return substitute(self.expr)


def _datasource_type(node: dict[str, Any], default: str | None) -> str | None:
    datasource = node.get("datasource")
    if isinstance(datasource, dict):
        return datasource.get("type") or default
    return default


def prometheus_queries(path: Path) -> list[PromQuery]:
    """Every Prometheus expression of the dashboard at ``path``."""
    dashboard = load_dashboard(path)
    found: list[PromQuery] = []
    for panel in panels(dashboard):
        panel_type = _datasource_type(panel, None)
        for target in panel.get("targets", []):
            if _datasource_type(target, panel_type) == "prometheus" and not target.get("hide"):
                found.append(
                    PromQuery(
                        path.stem,
                        f"panel {panel['id']} {panel['title']!r} target {target['refId']}",
                        target["expr"],
                        bool(target.get("exemplar")),
                    )
                )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if _datasource_type(annotation, None) == "prometheus":
            where = f"annotation {annotation['name']!r}"
            found.append(PromQuery(path.stem, where, annotation["expr"], annotation=True))
    return found


def all_prometheus_queries(exclude: Collection[Path] = ()) -> list[PromQuery]:
    """Every Prometheus expression of every dashboard but those in ``exclude``."""
    return [
        query
        for path in dashboard_paths()
        if path not in exclude
        for query in prometheus_queries(path)
    ]


# --- PromQL text ---------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced; an unknown variable raises KeyError."""
    values = {**GRAFANA_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        return values[name]

    return _VARIABLE.sub(replace, expr)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords, labels and strings left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


def exposition_names(text: str) -> set[str]:
    """Every sample name a Prometheus text exposition can hold, from its TYPE lines and samples.

    A family with no samples yet (a labelled counter never incremented) still has its TYPE
    line, so its names count as served.
    """
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
