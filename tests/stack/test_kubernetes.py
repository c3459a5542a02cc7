"""``deploy/kubernetes/base``: built by the real kustomize, checked against Kubernetes' schemas.

No cluster runs here, so what ``kubectl apply`` and the pods would find out is checked from
the build: the kustomization is built by kustomize itself (the pinned module ``make
backends`` builds, with ``--load-restrictor LoadRestrictionsNone`` as the documented command
uses), because what matters is its output: the ConfigMaps generated from the repository's own
files and the references kustomize rewrites to their hashed names, which reading each file in
Python would not show. Every object of the output is then validated against the OpenAPI
schema of Kubernetes ``KUBERNETES_VERSION`` (``kubernetes-validate``'s strict schemas, which
refuse unknown fields), and held to what the stack needs: the same images as .env, one copy
of each configuration file, every host:port a configuration names served by a Service, the
simulator's replicas behind a headless Service that Prometheus's DNS lookup and HAProxy's
template can use, probes, resources.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.stack.test_compose import ENV_FILE, IMAGE_VARIABLES, read_env_file
from tests.support.backends import backend_binary

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
KUBERNETES_VERSION = "1.37.0"
"""The Kubernetes whose API the manifests are validated against (the newest schemas that
kubernetes-validate 1.37.0 bundles)."""
NAMESPACE = "failure-lab"
_NOWHERE = "http://127.0.0.1:9"
PROJECT_IMAGE = "failure-lab"
REPLICAS = 3
COMPONENTS = {"redis", "simulator", "lb", "exporter", "prometheus", "jaeger", "grafana"}
# The image of each component, by the .env variable compose pins it with.
IMAGE_OF = {
    "redis": IMAGE_VARIABLES["redis"],
    "lb": IMAGE_VARIABLES["lb"],
    "prometheus": IMAGE_VARIABLES["prometheus"],
    "jaeger": IMAGE_VARIABLES["jaeger"],
    "grafana": IMAGE_VARIABLES["grafana"],
}
# Each generated ConfigMap and the repository files it is made of, under their keys.
CONFIG_FILES = {
    "haproxy-config": {"haproxy.cfg": "haproxy/haproxy.cfg"},
    "prometheus-config": {"prometheus.yml": "prometheus/prometheus.yml"},
    "prometheus-rules": {
        "alerts.yml": "prometheus/rules/alerts.yml",
        "recording.yml": "prometheus/rules/recording.yml",
    },
    "jaeger-config": {"config.yaml": "jaeger/config.yaml"},
    "grafana-datasources": {"datasources.yml": "grafana/provisioning/datasources/datasources.yml"},
    "grafana-dashboard-provider": {
        "dashboards.yml": "grafana/provisioning/dashboards/dashboards.yml"
    },
    "grafana-alerting": {"alerting.yml": "grafana/provisioning/alerting/alerting.yml"},
    "grafana-dashboards": {
        path.name: f"grafana/dashboards/{path.name}"
        for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    },
}


@cache
def built() -> tuple[dict[str, Any], ...]:
    """``kustomize build`` of the base: every object it outputs."""
    done = subprocess.run(
        [
            str(backend_binary("kustomize")),
            "build",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(BASE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in built() if o["kind"] == kind}


def deployment(name: str) -> dict[str, Any]:
    return objects("Deployment")[name]


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(name)["spec"]["template"]["spec"]
    return spec


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in sorted(objects("Deployment")):
        for container in pod_spec(name)["containers"]:
            yield name, container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def config_maps_by_base_name() -> dict[str, dict[str, Any]]:
    """Generated ConfigMaps under their names before kustomize added the content hash."""
    return {name.rsplit("-", 1)[0]: cm for name, cm in objects("ConfigMap").items()}


def service_ports() -> dict[str, set[int]]:
    return {
        name: {port["port"] for port in service["spec"]["ports"]}
        for name, service in objects("Service").items()
    }


def test_the_build_has_every_component() -> None:
    assert set(objects("Deployment")) == COMPONENTS
    assert set(objects("Service")) == COMPONENTS
    assert set(config_maps_by_base_name()) == set(CONFIG_FILES)
    assert set(objects("Namespace")) == {NAMESPACE}
    for obj in built():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    # The password is never in the manifests: no Secret comes with them.
    assert not objects("Secret")


@pytest.mark.parametrize(
    "index",
    range(len(built())),
    ids=lambda i: "{kind} {name}".format(
        kind=built()[i]["kind"], name=built()[i]["metadata"]["name"]
    ),
)
def test_object_matches_the_kubernetes_schema(index: int) -> None:
    obj = built()[index]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {error.message} at {error.path}")


def test_the_validator_refuses_what_kubernetes_would() -> None:
    """Worth something only if it catches mistakes: an unknown field, a wrong type."""
    broken = yaml.safe_load(yaml.safe_dump(deployment("simulator")))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment("simulator")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_config_maps_are_the_repository_files() -> None:
    """One copy: each ConfigMap holds the files of the repository byte for byte."""
    for base, files in CONFIG_FILES.items():
        data = config_maps_by_base_name()[base]["data"]
        assert set(data) == set(files), base
        for key, path in files.items():
            assert data[key] == (ROOT / path).read_text(encoding="utf-8"), path


def test_every_config_map_volume_is_a_generated_one() -> None:
    names = set(objects("ConfigMap"))
    used = set()
    for deployment_name in objects("Deployment"):
        spec = pod_spec(deployment_name)
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (deployment_name, mount)
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in names, volume
                used.add(volume["configMap"]["name"])
    assert used == names, "a generated ConfigMap is mounted nowhere"


def test_images_are_those_of_env() -> None:
    pinned = read_env_file(ENV_FILE)
    for name, container in containers():
        if name in IMAGE_OF:
            assert container["image"] == pinned[IMAGE_OF[name]], name
        else:
            assert container["image"].split(":")[0] == PROJECT_IMAGE, name


def test_the_simulator_has_replicas_behind_a_headless_service() -> None:
    simulator = deployment("simulator")
    assert simulator["spec"]["replicas"] == REPLICAS
    service = objects("Service")["simulator"]["spec"]
    # Headless: the name resolves to every pod, as Prometheus's dns_sd_configs and HAProxy's
    # server-template expect; not-ready pods too, so a replica in trouble stays observed.
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True
    labels = simulator["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "simulator"]
    (lookup,) = job["dns_sd_configs"]
    assert lookup["names"] == ["simulator"]
    assert [port["port"] for port in service["ports"]] == [lookup["port"]]


def test_haproxy_looks_the_replicas_up_by_their_full_name() -> None:
    """HAProxy's resolver applies no search domains, unlike Prometheus's."""
    (container,) = pod_spec("lb")["containers"]
    port = objects("Service")["simulator"]["spec"]["ports"][0]["port"]
    expected = f"simulator.{NAMESPACE}.svc.cluster.local:{port}"
    assert env_of(container)["SIMULATOR_ADDRESS"] == expected
    # One HAProxy: `balance first` pins control calls to one replica within one process.
    assert deployment("lb")["spec"]["replicas"] == 1


def test_every_address_a_configuration_names_is_a_service() -> None:
    """The URLs and host:port targets of the environment and of the mounted files."""
    ports = service_ports()
    named: list[tuple[str, str]] = []
    for name, container in containers():
        for key, value in env_of(container).items():
            if value.startswith(("http://", "redis://")):
                parts = urlsplit(value)
                named.append((f"{name} {key}", f"{parts.hostname}:{parts.port}"))
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                if not target.startswith("localhost:"):
                    named.append((f"prometheus job {job['job_name']}", target))
    datasources = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    for source in datasources["datasources"]:
        parts = urlsplit(source["url"])
        named.append((f"grafana datasource {source['name']}", f"{parts.hostname}:{parts.port}"))
    assert len(named) > 8
    for where, address in named:
        host, port = address.rsplit(":", 1)
        assert host in ports, f"{where}: no Service {host}"
        assert int(port) in ports[host], f"{where}: Service {host} has no port {port}"


def test_service_target_ports_are_container_ports() -> None:
    for name, service in objects("Service").items():
        declared = {
            port["name"]
            for container in pod_spec(name)["containers"]
            for port in container["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared, (name, port)


def test_the_project_processes_are_probed_for_liveness_and_readiness() -> None:
    for name in ("simulator", "exporter"):
        (container,) = pod_spec(name)["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        port = container["ports"][0]
        assert container["livenessProbe"]["httpGet"]["port"] == port["name"]
        args = container["args"]
        assert args[0] == name
        assert int(args[args.index("--port") + 1]) == port["containerPort"]
    for name, container in containers():
        assert "livenessProbe" in container, name
        assert "readinessProbe" in container, name


def test_the_probed_paths_are_served() -> None:
    """The probes ask routes both processes really answer."""
    simulator = create_app(Settings(), embedded_shim=False)
    exporter = create_exporter_app(
        Settings(prometheus_url=_NOWHERE, jaeger_url=_NOWHERE, simulator_url=_NOWHERE)
    )
    for name, app in (("simulator", simulator), ("exporter", exporter)):
        paths = set(app.openapi()["paths"])  # routers are included lazily: ask the document
        (container,) = pod_spec(name)["containers"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["path"] in paths, (name, probe)


def quantity(value: str | int) -> float:
    """A Kubernetes quantity in cores or bytes (the suffixes these manifests use)."""
    text = str(value)
    for suffix, factor in (("m", 1e-3), ("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30)):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def test_every_container_has_requests_within_limits() -> None:
    for name, container in containers():
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, (name, resource)


def test_every_pod_runs_as_non_root_without_privileges() -> None:
    for name in objects("Deployment"):
        assert pod_spec(name)["securityContext"]["runAsNonRoot"] is True, name
    for name, container in containers():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name


def test_the_grafana_password_comes_from_a_secret() -> None:
    (container,) = pod_spec("grafana")["containers"]
    (password,) = [e for e in container["env"] if e["name"] == "GF_SECURITY_ADMIN_PASSWORD"]
    assert "value" not in password
    assert password["valueFrom"]["secretKeyRef"] == {"name": "grafana-admin", "key": "password"}


def test_the_processes_are_configured_as_in_compose() -> None:
    """The same FAILURE_LAB_* and OTEL_* settings as docker-compose.yml, Secrets aside."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("simulator", "exporter"):
        (container,) = pod_spec(name)["containers"]
        in_compose = {
            key: str(value)
            for key, value in compose[name]["environment"].items()
            if "${" not in str(value)  # from the environment in compose, a Secret here
            and not key.endswith(("_GRAFANA_URL", "_JAEGER_UI_URL"))  # a browser's URLs
        }
        assert env_of(container) == in_compose, name
        assert container["args"] == compose[name]["command"], name
