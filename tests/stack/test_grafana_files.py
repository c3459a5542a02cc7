"""``grafana/``: provisioning and dashboards, checked without a Grafana.

Grafana cannot run here, so what it would refuse or silently show empty is checked from the
files: the dashboards through the models of Grafana's foundation SDK (``grafana_model.py``),
datasource uids against provisioning, and every metric a query reads against the names the
simulator, the exporter and HAProxy really serve or the recording rules record. Whether each
query returns data is checked against a real Prometheus in ``test_live_stack.py`` (one replica) and
``test_load_balancer.py`` (the per-replica dashboard: replicas behind HAProxy).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.stack.grafana_model import lost_fields, round_trip
from tests.stack.stackfiles import (
    PROMETHEUS_BUILTINS,
    PROVISIONING,
    all_prometheus_queries,
    dashboard_paths,
    load_dashboard,
    load_yaml,
    metric_names,
    panels,
    recorded_names,
    substitute,
)

DASHBOARDS = {path.stem: path for path in dashboard_paths()}
GRAFANA_EXPANSION = re.compile(r"(?<!\$)\$(?!\$)")


def datasources() -> dict[str, dict[str, Any]]:
    document = load_yaml(PROVISIONING / "datasources" / "datasources.yml")
    return {source["uid"]: source for source in document["datasources"]}


def datasource_refs(node: Any) -> list[dict[str, Any]]:
    """Every ``datasource`` object anywhere in a dashboard."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(datasource_refs(item))
    return found


def test_the_three_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {"overview", "traces", "replicas"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_valid_json_with_unique_ids(name: str) -> None:
    text = DASHBOARDS[name].read_text(encoding="utf-8")
    dashboard = json.loads(text)
    # Stored as json.dumps(indent=2) writes it, so a regenerated file gives a clean diff.
    assert text == json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
    assert dashboard["uid"] == f"failure-lab-{name}"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"
    assert all(isinstance(panel_id, int) and panel_id > 0 for panel_id in ids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap_and_fit_the_grid(name: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(load_dashboard(DASHBOARDS[name])):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_key_of_the_dashboard_is_known_to_grafanas_models(name: str) -> None:
    dashboard = load_dashboard(DASHBOARDS[name])
    lost = lost_fields(dashboard, round_trip(dashboard))
    assert not lost, "\n".join(lost)


def test_the_round_trip_catches_what_grafana_would_ignore() -> None:
    """The check is only worth something if it catches mistakes, at every level."""
    broken = load_dashboard(DASHBOARDS["overview"])
    panel = next(p for p in panels(broken) if p["type"] == "timeseries" and p.get("targets"))
    panel["titel"] = "typo"
    panel["options"]["legnd"] = {"showLegend": True}
    panel["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 2
    panel["targets"][0]["exprr"] = "up"
    broken["refreshh"] = "5s"
    lost = lost_fields(broken, round_trip(broken))
    where = next(i for i, p in enumerate(broken["panels"]) if p is panel)
    assert sorted(lost) == sorted(
        f"{path}: unknown to Grafana's models"
        for path in (
            "/refreshh",
            f"/panels[{where}]/titel",
            f"/panels[{where}]/options/legnd",
            f"/panels[{where}]/fieldConfig/defaults/custom/lineWidht",
            f"/panels[{where}]/targets[0]/exprr",
        )
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_datasource_used_is_provisioned(name: str) -> None:
    provisioned = datasources()
    for ref in datasource_refs(load_dashboard(DASHBOARDS[name])):
        assert ref["uid"] in provisioned, ref
        assert provisioned[ref["uid"]]["type"] == ref["type"], ref


def test_every_query_reads_served_or_recorded_metrics(served_metric_names: set[str]) -> None:
    known = served_metric_names | recorded_names() | PROMETHEUS_BUILTINS
    queries = all_prometheus_queries()
    assert len(queries) > 40
    for query in queries:
        names = metric_names(query.promql)
        assert names, f"{query.dashboard} {query.where}: no metric in {query.expr!r}"
        unknown = names - known
        assert not unknown, f"{query.dashboard} {query.where} reads {unknown}"


def test_every_recording_rule_is_read_by_a_dashboard() -> None:
    read = set().union(*(metric_names(query.promql) for query in all_prometheus_queries()))
    # The bucket rates only feed the quantile rules; the target average feeds the ratio; the
    # limiter's ratios feed their alerts.
    unread = recorded_names() - read
    assert unread <= {
        "job_le:failure_lab_http_request_duration_seconds_bucket:rate1m",
        "job:failure_lab_generator_target_rps:avg1m",
        "job_algorithm:failure_lab_ratelimit_limited:ratio_rate1m",
        "job_algorithm:failure_lab_ratelimit_fail_open:ratio_rate1m",
        "job:failure_lab_generator_sent_over_target:ratio_rate1m",
    }, unread


def test_dashboard_variables_are_all_substituted() -> None:
    for query in all_prometheus_queries():
        assert "$" not in query.promql, query


def test_latency_panels_ask_for_exemplars() -> None:
    with_exemplars = [query for query in all_prometheus_queries() if query.exemplar]
    assert {query.dashboard for query in with_exemplars} == {"overview", "traces"}
    assert any("failure_lab_http_request_duration_seconds" in q.expr for q in with_exemplars)


def test_overview_shows_the_failure_config_and_its_changes() -> None:
    overview = load_dashboard(DASHBOARDS["overview"])
    fields = {
        match
        for panel in panels(overview)
        for target in panel.get("targets", [])
        for match in re.findall(r'failure_lab_failure_config\{field="(\w+)"\}', target["expr"])
    }
    assert fields == {
        "failure_injection_enabled",
        "failure_rate",
        "db_latency_min_ms",
        "db_latency_max_ms",
        "db_timeout_seconds",
        "redis_timeout_seconds",
        "max_retries",
    }
    annotations = overview["annotations"]["list"]
    assert any("failure_lab_failure_config" in a["expr"] for a in annotations)
    assert any("ALERTS" in t["expr"] for p in panels(overview) for t in p.get("targets", []))


def test_overview_annotates_disruptions_and_scenario_phases() -> None:
    overview = load_dashboard(DASHBOARDS["overview"])
    annotations = {a["name"]: a for a in overview["annotations"]["list"]}
    assert set(annotations) == {"Failure config changes", "Disruptions", "Scenario phases"}
    disruptions, phases = annotations["Disruptions"], annotations["Scenario phases"]
    assert metric_names(disruptions["expr"]) == {"failure_lab_disruptions_active"}
    assert "{{type}}" in disruptions["titleFormat"]
    assert metric_names(phases["expr"]) == {"failure_lab_generator_scenario_phase"}
    assert phases["titleFormat"] == "{{scenario}}: {{phase}}"
    for annotation in (disruptions, phases):
        # Regions: Grafana joins steps with a value above 0 that are one step apart; a value
        # taken as the time would make each step a point event instead.
        assert annotation["expr"].endswith("> 0"), annotation
        assert not annotation.get("useValueForTime"), annotation
        assert annotation["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert annotation["enable"] is True


def test_overview_has_a_row_for_disruptions_and_the_breaker() -> None:
    overview = load_dashboard(DASHBOARDS["overview"])
    (row,) = [p for p in overview["panels"] if p["title"] == "Disruptions and circuit breaker"]
    below = [
        panel
        for panel in panels(overview)
        if panel["gridPos"]["y"] == row["gridPos"]["y"] + 1 and panel["type"] != "row"
    ]
    read = set().union(*(metric_names(t["expr"]) for p in below for t in p["targets"]))
    assert read == {
        "failure_lab_disruptions_active",
        "failure_lab_disruption_planned_end_timestamp_seconds",
        "failure_lab_disruption_requests_affected_total",
        "failure_lab_circuit_breaker_enabled",
        "failure_lab_circuit_breaker_state",
        "failure_lab_circuit_breaker_trips_total",
    }
    (timeline,) = [panel for panel in below if panel["type"] == "state-timeline"]
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    texts = {key: value["text"] for key, value in mapping["options"].items()}
    assert texts == {"0": "off", "1": "closed", "2": "half-open", "3": "open"}


def test_traces_dashboard_searches_the_service_and_shows_a_trace() -> None:
    traces = load_dashboard(DASHBOARDS["traces"])
    jaeger = [
        target
        for panel in panels(traces)
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "jaeger"
    ]
    searches = [target for target in jaeger if target.get("queryType") == "search"]
    assert searches
    assert all(t["service"] == "failure-lab-simulator" for t in searches)
    assert any(t.get("tags") == "error=true" for t in searches)
    assert any("minDuration" in t for t in searches)
    viewers = [panel for panel in panels(traces) if panel["type"] == "traces"]
    assert len(viewers) == 1
    assert viewers[0]["targets"][0]["query"] == "${trace_id}"
    variables = {variable["name"] for variable in traces["templating"]["list"]}
    assert variables == {"trace_id"}


# --- provisioning --------------------------------------------------------------------------


def test_datasources_link_exemplars_to_traces_and_traces_to_metrics() -> None:
    sources = datasources()
    assert set(sources) == {"prometheus", "jaeger"}
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert (prometheus["type"], prometheus["url"]) == ("prometheus", "http://prometheus:9090")
    assert (jaeger["type"], jaeger["url"]) == ("jaeger", "http://jaeger:16686")
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "Open trace in Jaeger"}
    ]
    to_metrics = jaeger["jsonData"]["tracesToMetrics"]
    assert to_metrics["datasourceUid"] == "prometheus"
    assert len(to_metrics["queries"]) >= 2
    for query in to_metrics["queries"]:
        assert "{$$__tags}" in query["query"], "a literal $ must be $$ in provisioning"


def test_trace_to_metrics_queries_read_served_metrics(served_metric_names: set[str]) -> None:
    for query in datasources()["jaeger"]["jsonData"]["tracesToMetrics"]["queries"]:
        promql = query["query"].replace("{$$__tags}", "")
        assert metric_names(promql) <= served_metric_names, query


def test_provisioning_has_no_unescaped_dollar() -> None:
    for path in PROVISIONING.rglob("*"):
        if path.is_file():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                assert not GRAFANA_EXPANSION.search(code), f"{path}:{number}: {line}"


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    document = load_yaml(PROVISIONING / "dashboards" / "dashboards.yml")
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_provisioning_folders_hold_only_files_grafana_accepts() -> None:
    # Older Grafana releases refuse to start on any other file in the alerting folder.
    for folder in ("datasources", "dashboards", "alerting"):
        files = list((PROVISIONING / folder).iterdir())
        assert files, folder
        for path in files:
            assert Path(path).suffix in (".yml", ".yaml", ".json"), path
            assert load_yaml(path)["apiVersion"] == 1, path


def test_grafana_variables_substitute_as_grafana_would() -> None:
    assert substitute("rate(x[$__rate_interval])") == "rate(x[15s])"
    assert substitute("increase(x[${__range}])") == "increase(x[1m])"
    with pytest.raises(KeyError):
        substitute('rate(x{job=~"$job"}[1m])')


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_trace_id_query_runs_while_its_variable_can_be_empty(name: str) -> None:
    """Grafana's Jaeger data source answers a trace-ID query with an empty ID with an error
    ("traceID is empty"). A panel that looks a trace up by a variable sits in a collapsed row,
    which runs no query until someone opens it."""
    dashboard = load_dashboard(DASHBOARDS[name])
    collapsed = {
        id(inner)
        for row in dashboard["panels"]
        if row["type"] == "row" and row.get("collapsed")
        for inner in row.get("panels", [])
    }
    lookups = [
        panel
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("datasource", {}).get("type") == "jaeger"
        and not target.get("queryType")
        and "$" in target.get("query", "")
    ]
    assert [panel["title"] for panel in lookups if id(panel) not in collapsed] == []
    if name == "traces":
        assert [panel["type"] for panel in lookups] == ["traces"]


def test_the_replicas_dashboard_shows_each_replica_and_haproxy() -> None:
    replicas = load_dashboard(DASHBOARDS["replicas"])
    exprs = [t["expr"] for p in panels(replicas) for t in p.get("targets", [])]
    by_instance = " ".join(e for e in exprs if "by (instance" in e)
    # Rate, errors and p99 of each replica.
    assert "failure_lab_http_requests_total" in by_instance
    assert 'status=~"5..|429"' in by_instance
    assert "histogram_quantile(0.99" in by_instance
    assert "failure_lab_http_request_duration_seconds_bucket" in by_instance
    # HAProxy: servers per backend, per-server responses, health checks.
    read = set().union(*(metric_names(substitute(e)) for e in exprs))
    assert {
        "haproxy_backend_active_servers",
        "haproxy_server_status",
        "haproxy_server_http_responses_total",
        "haproxy_server_check_failures_total",
    } <= read
