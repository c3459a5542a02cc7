"""``prometheus/``: the config and rules pass promtool, and the rule unit tests pass.

promtool is the real parser and evaluator: ``check config`` also loads the rule files the
config names, and ``test rules`` runs the unit tests in ``prometheus/tests`` (every recording
rule's samples, every alert firing and not firing). The checks around it hold the rules to the
conventions the dashboards and runbooks rely on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.stack.stackfiles import (
    PROMETHEUS_CONFIG,
    PROMETHEUS_DIR,
    RULE_TESTS_DIR,
    RUNBOOKS,
    alerting_rules,
    load_yaml,
    metric_names,
    promtool,
    recorded_names,
    recording_rules,
    rule_files,
)

REQUIRED_ALERTS = {
    "HighErrorRate",
    "HighP99Latency",
    "RetryStorm",
    "CacheHitRatioCollapse",
    "RequestsRateLimited",
    "RequestsShed",
    "GeneratorBehindTarget",
    "TargetDown",
    "SpansDropped",
    "DisruptionOverran",
}
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$")


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS_DIR.parent, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_config_is_valid_and_loads_every_rule_file() -> None:
    config = PROMETHEUS_CONFIG.relative_to(PROMETHEUS_DIR.parent)
    output = run_promtool("check", "config", str(config))
    for path in rule_files():
        assert path.name in output, f"check config did not load {path.name}:\n{output}"


def test_config_scrapes_the_stack_services_every_5s() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]

    def targets(job: dict[str, Any]) -> list[str]:
        if "dns_sd_configs" in job:  # every replica: one A record each
            (lookup,) = job["dns_sd_configs"]
            return [f"{name}:{lookup['port']} (DNS {lookup['type']})" for name in lookup["names"]]
        targets: list[str] = job["static_configs"][0]["targets"]
        return targets

    jobs = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), targets(job))
        for job in config["scrape_configs"]
    }
    assert jobs == {
        "simulator": ("/metrics", ["simulator:8001 (DNS A)"]),
        "haproxy": ("/metrics", ["lb:8405"]),
        "exporter": ("/metrics", ["exporter:8000"]),
        "prometheus": ("/metrics", ["localhost:9090"]),
    }


def test_rules_are_valid() -> None:
    files = [str(path.relative_to(PROMETHEUS_DIR.parent)) for path in rule_files()]
    assert files, "no rule files"
    output = run_promtool("check", "rules", *files)
    assert "SUCCESS" in output


def test_rule_unit_tests_pass() -> None:
    files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert files, "no promtool unit tests"
    output = run_promtool("test", "rules", *(str(path) for path in files))
    assert output.count("SUCCESS") == len(files), output


def _tested_names() -> tuple[set[str], set[str]]:
    """Recorded names checked by an exp_samples test, and alerts tested firing."""
    recorded: set[str] = set()
    firing: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in load_yaml(path)["tests"]:
            for expr_test in case.get("promql_expr_test", []):
                if expr_test.get("exp_samples"):
                    recorded.add(expr_test["expr"])
            for alert_test in case.get("alert_rule_test", []):
                if alert_test.get("exp_alerts"):
                    firing.add(alert_test["alertname"])
    return recorded, firing


def test_every_rule_has_a_unit_test_with_samples() -> None:
    recorded, firing = _tested_names()
    assert recorded_names() <= recorded, f"untested: {sorted(recorded_names() - recorded)}"
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert alerts <= firing, f"never tested firing: {sorted(alerts - firing)}"
    not_firing = {
        alert_test["alertname"]
        for path in RULE_TESTS_DIR.glob("*.yml")
        for case in load_yaml(path)["tests"]
        for alert_test in case.get("alert_rule_test", [])
        if alert_test.get("exp_alerts") == []
    }
    assert alerts <= not_firing, f"never tested not firing: {sorted(alerts - not_firing)}"


def test_recording_rules_follow_level_metric_operations() -> None:
    for rule in recording_rules():
        name = rule["record"]
        assert RECORD_NAME.match(name), name
        level, metric, _ = name.split(":")
        assert metric.startswith("failure_lab_"), name
        # The level names the labels kept: those of every `by (...)` plus any the rule adds.
        kept = set(level.split("_")) - set(rule.get("labels", {}))
        assert "job" in kept, name
        for labels in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            assert {label.strip() for label in labels.split(",")} == kept, name


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the markdown's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_alerts_have_severity_annotations_and_a_runbook_section() -> None:
    alerts = alerting_rules()
    assert {rule["alert"] for rule in alerts} >= REQUIRED_ALERTS
    anchors = _anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations.keys() >= {"summary", "description", "runbook"}, rule["alert"]
        path, _, anchor = annotations["runbook"].partition("#")
        assert (PROMETHEUS_DIR.parent / path) == RUNBOOKS, annotations["runbook"]
        assert anchor == rule["alert"].lower(), annotations["runbook"]
        assert anchor in anchors, annotations["runbook"]


def test_alerts_wait_briefly_before_firing() -> None:
    durations = {rule["alert"]: rule.get("for", "0s") for rule in alerting_rules()}
    for alert, duration in durations.items():
        seconds = int(duration[:-1]) * (60 if duration.endswith("m") else 1)
        assert 0 <= seconds <= 60, f"{alert}: for {duration}"


def test_rules_read_only_served_or_recorded_metrics(served_metric_names: set[str]) -> None:
    known = served_metric_names | recorded_names() | {"up"}
    for rule in [*recording_rules(), *alerting_rules()]:
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_rule_files_are_plain_yaml_documents() -> None:
    for path in [PROMETHEUS_CONFIG, *rule_files(), *RULE_TESTS_DIR.glob("*.yml")]:
        documents = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
        assert len(documents) == 1, path
