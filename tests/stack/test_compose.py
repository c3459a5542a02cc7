"""Static checks of the compose stack: docker-compose.yml, .env, Dockerfile, jaeger/config.yaml,
and how haproxy/haproxy.cfg and prometheus/prometheus.yml are wired into it.

Docker cannot run on the machines that run the tests, so what `docker compose up` would
find out the hard way is checked here instead: every service and image is there and pinned,
every variable is defined (except the Grafana admin password, which must come from the
environment), every mounted path exists, ports, health checks and start order agree, the
simulator and the shim point at the right services, the simulator can be scaled (no fixed
name or host port; HAProxy and Prometheus find its replicas by DNS), the file matches the
Compose Specification, the image is built from the lock and runs as a non-root user, and
Jaeger's configuration receives OTLP where the simulator sends it and serves the API where the
shim reads it. HAProxy itself runs in ``test_load_balancer.py``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from failure_lab.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_FILE = ROOT / ".env"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
JAEGER_CONFIG = ROOT / "jaeger" / "config.yaml"
HAPROXY_CONFIG = ROOT / "haproxy" / "haproxy.cfg"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
# Where the HAProxy image's own command (`haproxy -f ...`) reads its configuration.
HAPROXY_IMAGE_CONFIG = "/usr/local/etc/haproxy/haproxy.cfg"
COMPOSE_SCHEMA = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"

SECRET = "GRAFANA_ADMIN_PASSWORD"
JSONSCHEMA_HINT = (
    "jsonschema is not installed, so docker-compose.yml cannot be checked against the Compose "
    'Specification: add "jsonschema==4.26.0", to [dependency-groups] dev in pyproject.toml, '
    "then run `uv lock` (make test installs it)"
)

# Services, the variable in .env that pins each third-party image, and published ports.
IMAGE_VARIABLES = {
    "redis": "REDIS_IMAGE",
    "prometheus": "PROMETHEUS_IMAGE",
    "jaeger": "JAEGER_IMAGE",
    "grafana": "GRAFANA_IMAGE",
    "lb": "HAPROXY_IMAGE",
}
BUILT_SERVICES = ("simulator", "exporter")
SERVICES = {*IMAGE_VARIABLES, *BUILT_SERVICES}
PORTS = {
    "redis": {6379},
    "prometheus": {9090},
    "jaeger": {16686, 4317, 4318},
    "grafana": {3000},
    "lb": {8080, 8405},
    "simulator": set(),  # replicas are reached through lb, never by a host port
    "exporter": {8000},
}
SIMULATOR_PORT = 8001
# What each health check must run (a tool present in that image) and where it must look.
HEALTH_PROBES = {
    "redis": ("redis-cli", "ping"),
    "prometheus": ("wget", "http://127.0.0.1:9090/-/ready"),
    "jaeger": ("wget", "http://127.0.0.1:13133/status"),
    "grafana": ("wget", "http://127.0.0.1:3000/api/health"),
    "lb": ("wget", "http://127.0.0.1:8405/health"),
    # Readiness where depends_on waits (the exporter waits for the simulator and its Redis),
    # liveness where nothing does.
    "simulator": ("python", "http://127.0.0.1:8001/health/ready"),
    "exporter": ("python", "http://127.0.0.1:8000/health/live"),
}
# Start order: who waits for whom.
DEPENDENCIES = {
    "redis": set(),
    "prometheus": set(),
    "jaeger": set(),
    "grafana": {"prometheus", "jaeger"},
    "simulator": {"redis", "jaeger"},
    "lb": {"simulator"},
    "exporter": {"simulator", "lb", "prometheus", "jaeger"},
}
# Every bind mount: host path (relative to the repository) -> container path.
BIND_MOUNTS = {
    "prometheus": {"prometheus": "/etc/prometheus"},
    "jaeger": {"jaeger/config.yaml": "/etc/jaeger/config.yaml"},
    "grafana": {
        "grafana/provisioning": "/etc/grafana/provisioning",
        "grafana/dashboards": "/var/lib/grafana/dashboards",
    },
    "lb": {"haproxy/haproxy.cfg": HAPROXY_IMAGE_CONFIG},
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SKIPPED_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# ---- helpers ---------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as docker compose reads them (comments and blanks ignored)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        assert sep, f".env: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def variables(text: str) -> set[str]:
    """Names of the variables compose interpolates in ``text`` (``$$`` is a literal ``$``)."""
    names: set[str] = set()
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("bare")
        if name:
            names.add(name)
    return names


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``${X?e}``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        modifier = match.group("modifier") or ""
        value = env.get(name)
        for op in (":-", ":?", "-", "?"):
            if modifier.startswith(op):
                arg = modifier[len(op) :]
                unset = value is None or (op.startswith(":") and value == "")
                if unset and op.endswith("-"):
                    return arg
                if unset:
                    raise LookupError(f"{name}: {arg}")
                return value or ""
        assert not modifier, f"unsupported interpolation ${{{name}{modifier}}}"
        return value or ""

    return _VARIABLE.sub(replace, text)


def split_port(spec: str) -> tuple[str, int, int]:
    """``[ip:]host:container`` short syntax -> (ip, host port, container port)."""
    parts = spec.split(":")
    assert len(parts) in (2, 3), f"unexpected port syntax {spec!r}"
    ip = parts[0] if len(parts) == 3 else ""
    return ip, int(parts[-2]), int(parts[-1].split("/")[0])


def split_volume(spec: str) -> tuple[str, str, set[str]]:
    """``source:target[:mode]`` short syntax -> (source, target, options)."""
    source, target, *rest = spec.split(":")
    return source, target, set(rest[0].split(",")) if rest else set()


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def flag(command: list[str], name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in a command."""
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def host_and_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def listen_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def interpolate_all(document: Any, env: Mapping[str, str]) -> None:
    for text in strings(document):
        interpolate(text, env)


def repo_files() -> Iterator[Path]:
    """Every file of the work tree, without git's store, the venv and tool caches."""
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]
        for file in files:
            yield Path(directory) / file


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return read_env_file(ENV_FILE)


@pytest.fixture(scope="module")
def jaeger() -> dict[str, Any]:
    document = yaml.safe_load(JAEGER_CONFIG.read_text())
    assert isinstance(document, dict)
    return document


# ---- docker-compose.yml and .env -------------------------------------------------------------


def test_the_seven_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


@pytest.mark.parametrize(("name", "variable"), sorted(IMAGE_VARIABLES.items()))
def test_third_party_images_are_pinned_in_env(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str], name: str, variable: str
) -> None:
    assert services[name]["image"] == f"${{{variable}}}"
    image = dotenv.get(variable, "")
    reference = image.split("@", 1)[0]
    repository, _, tag = reference.rpartition(":")
    assert repository, f"{variable}={image!r} has no tag"
    assert "/" not in tag, f"{variable}={image!r} has no tag"
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{variable}: pin a release, not {tag!r}"


def test_project_services_share_one_image_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    images = {services[name]["image"] for name in BUILT_SERVICES}
    assert len(images) == 1
    for name in BUILT_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")) == DOCKERFILE


def test_every_variable_is_defined_in_env(compose: dict[str, Any], dotenv: dict[str, str]) -> None:
    used = set().union(*(variables(text) for text in strings(compose)))
    undefined = used - {SECRET} - set(dotenv)
    assert not undefined, f"undefined in .env: {sorted(undefined)}"
    assert SECRET in used
    # With .env alone the missing password stops compose; with it, everything interpolates.
    with pytest.raises(LookupError, match=SECRET):
        interpolate_all(compose, dotenv)
    interpolate_all(compose, {**dotenv, SECRET: "from-the-environment"})


def test_grafana_admin_password_only_comes_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = environment(services["grafana"])
    # `:?` makes compose refuse to start without it; a default would ship a known password.
    assert re.fullmatch(rf"\$\{{{SECRET}:\?[^}}]+\}}", grafana["GF_SECURITY_ADMIN_PASSWORD"])
    assert not any(k.startswith("GF_SECURITY_ADMIN_PASSWORD_") for k in grafana)
    definition = re.compile(
        rf"^\s*(?:export\s+|ENV\s+|ARG\s+|-\s*)?(?:{SECRET}|GF_SECURITY_ADMIN_PASSWORD)\s*[=:]"
        r"|^\s*admin_password\s*=",
        re.MULTILINE,
    )
    offenders = []
    for path in repo_files():
        if path.suffix in {".py", ".md"}:
            continue  # code and prose may name the variable; they cannot define it for compose
        text = path.read_text(errors="replace")
        if path == COMPOSE_FILE:
            text = text.replace("GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:?", "")
        if definition.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"the Grafana admin password is defined in {offenders}"


def test_bind_mounts_exist_and_are_read_only(services: dict[str, dict[str, Any]]) -> None:
    found: dict[str, dict[str, str]] = {}
    missing = []
    for name, service in services.items():
        for spec in service.get("volumes", []):
            assert isinstance(spec, str), f"{name}: use the short volume syntax"
            source, target, options = split_volume(spec)
            if not source.startswith((".", "/")):
                continue  # a named volume
            relative = PurePosixPath(source).relative_to(".").as_posix()
            found.setdefault(name, {})[relative] = target
            assert "ro" in options, f"{name}: {spec} must be read-only"
            if not (ROOT / relative).exists():
                missing.append(relative)
    assert found == BIND_MOUNTS
    assert not missing, f"mounted but missing from the repository: {sorted(missing)}"


@pytest.mark.parametrize(
    ("name", "option", "host_file"),
    [
        ("prometheus", "--config.file", "prometheus/prometheus.yml"),
        ("jaeger", "--config", "jaeger/config.yaml"),
    ],
)
def test_configuration_files_named_on_the_command_line_are_mounted(
    services: dict[str, dict[str, Any]], name: str, option: str, host_file: str
) -> None:
    container_path = PurePosixPath(flag(command_of(services[name]), option))
    resolved = None
    for source, target in BIND_MOUNTS[name].items():
        if container_path == PurePosixPath(target):
            resolved = source
        elif container_path.is_relative_to(target):
            resolved = (PurePosixPath(source) / container_path.relative_to(target)).as_posix()
    assert resolved == host_file
    assert (ROOT / host_file).is_file(), f"{host_file} is missing"


def test_ports_are_published_on_the_bind_address(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    assert dotenv["BIND_ADDRESS"] == "127.0.0.1", "the lab listens on loopback by default"
    for name, expected in PORTS.items():
        published = set()
        for spec in services[name].get("ports", []):
            raw_ip = str(spec).split(":")[0]
            assert raw_ip == "${BIND_ADDRESS}", f"{name}: {spec} bypasses BIND_ADDRESS"
            ip, host, container = split_port(interpolate(str(spec), dotenv))
            assert ip == "127.0.0.1"
            assert host == container, f"{name}: {spec} remaps the port"
            published.add(container)
        assert published == expected, name


@pytest.mark.parametrize("name", sorted(BUILT_SERVICES))
def test_project_services_listen_on_their_published_port(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    command = command_of(services[name])
    assert command[0] == name
    assert flag(command, "--host") == "0.0.0.0"
    assert {int(flag(command, "--port"))} == (PORTS[name] or {SIMULATOR_PORT})


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    check = service.get("healthcheck")
    if check is None or check.get("disable"):
        reason = service.get("x-no-healthcheck-reason", "")
        assert reason.strip(), f"{name}: no health check and no x-no-healthcheck-reason"
        return
    test = check["test"]
    assert isinstance(test, list), f"{name}: {test!r}"
    assert test[0] in {"CMD", "CMD-SHELL"}, f"{name}: {test!r}"
    argv = test[1:] if test[0] == "CMD" else shlex.split(test[1])
    tool, target = HEALTH_PROBES[name]
    assert argv[0] == tool, f"{name}: probe with {tool}, which the image has"
    assert any(target in arg for arg in argv), f"{name}: probe {target}"
    for key in ("interval", "timeout", "retries"):
        assert key in check, f"{name}: healthcheck.{key}"


def test_depends_on_names_exist_and_conditions_hold(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: give depends_on conditions"
        assert set(depends) == DEPENDENCIES[name], name
        for target, spec in depends.items():
            assert target in services
            assert target != name
            condition = spec["condition"]
            assert condition in CONDITIONS
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no health check"
            else:
                assert "healthcheck" not in services[target], f"wait for {target} to be healthy"

    # No cycles: a topological order exists.
    order: list[str] = []
    pending = {n: set(s.get("depends_on", {})) for n, s in services.items()}
    while pending:
        ready = sorted(n for n, deps in pending.items() if deps <= set(order))
        assert ready, f"depends_on cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            del pending[n]


@pytest.mark.parametrize("name", sorted(BUILT_SERVICES))
def test_failure_lab_variables_are_real_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    prefix = "FAILURE_LAB_"
    for key in environment(services[name]):
        if key.startswith(prefix):
            assert key.removeprefix(prefix).lower() in Settings.model_fields, f"{name}: {key}"


def test_simulator_sends_spans_to_jaeger_and_uses_redis(
    services: dict[str, dict[str, Any]], jaeger: dict[str, Any]
) -> None:
    env = environment(services["simulator"])
    otlp_http = listen_port(jaeger["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    assert otlp_http == 4318
    assert host_and_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("jaeger", otlp_http)
    assert urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).path in ("", "/")  # SDK adds /v1/traces
    assert env["OTEL_SERVICE_NAME"] == "failure-lab-simulator"
    assert host_and_port(env["FAILURE_LAB_REDIS_URL"]) == ("redis", 6379)
    assert urlsplit(env["FAILURE_LAB_REDIS_URL"]).scheme == "redis"


def test_exporter_reads_the_right_services(
    services: dict[str, dict[str, Any]], jaeger: dict[str, Any]
) -> None:
    env = environment(services["exporter"])
    query_port = listen_port(jaeger["extensions"]["jaeger_query"]["http"]["endpoint"])
    assert host_and_port(env["FAILURE_LAB_PROMETHEUS_URL"]) == ("prometheus", 9090)
    assert host_and_port(env["FAILURE_LAB_JAEGER_URL"]) == ("jaeger", query_port)
    # Control calls go through the load balancer, which sends them all to one replica.
    assert host_and_port(env["FAILURE_LAB_SIMULATOR_URL"]) == ("lb", haproxy_port("FRONTEND_BIND"))
    # The shim looks traces up under the service name the simulator exports them with.
    default = Settings.model_fields["service_name"].default
    service_name = env.get("FAILURE_LAB_SERVICE_NAME", default)
    assert service_name == environment(services["simulator"])["OTEL_SERVICE_NAME"]


def test_prometheus_flags(services: dict[str, dict[str, Any]]) -> None:
    command = command_of(services["prometheus"])
    assert flag(command, "--config.file") == "/etc/prometheus/prometheus.yml"
    assert "--enable-feature=exemplar-storage" in command
    assert "--web.enable-lifecycle" in command


def test_grafana_anonymous_viewers(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:
        pytest.fail(JSONSCHEMA_HINT)
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


# ---- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_from_a_pinned_python_311() -> None:
    instructions = dockerfile_instructions()
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    assert any(re.search(r"\bAS builder$", s, re.IGNORECASE) for s in stages)
    assert any(k == "COPY" and a.startswith("--from=builder /opt/venv") for k, a in instructions), (
        "the runtime stage copies the builder's venv"
    )
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert all(s.split()[0] == "${PYTHON_IMAGE}" for s in stages), "one base image for both stages"


def test_dockerfile_installs_from_the_lock_with_the_makefile_uv() -> None:
    instructions = dockerfile_instructions()
    runs = [a for k, a in instructions if k == "RUN" and "uv sync" in a]
    assert runs
    for run in runs:
        assert "--locked" in run, run
        assert "--no-dev" in run, run
    assert any(k == "COPY" and "uv.lock" in a.split() for k, a in instructions)
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    assert uv_version
    assert args["UV_VERSION"] == uv_version.group(1)


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [a for k, a in runtime if k == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    entrypoint = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "failure-lab" in scripts
    assert len(entrypoint) == 1
    assert PurePosixPath(entrypoint[0]).name == "failure-lab"
    assert json.loads(next(a for k, a in runtime if k == "CMD")) == ["serve", "--host", "0.0.0.0"]
    exposed = {int(p) for k, a in runtime if k == "EXPOSE" for p in a.split()}
    assert exposed == {8000, 8001}


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= patterns
    needed = {"pyproject.toml", "uv.lock", "README.md", "simulator", "exporter"}
    assert not needed & patterns, "the build needs these"


# ---- jaeger/config.yaml ----------------------------------------------------------------------


def test_jaeger_pipeline_and_components(jaeger: dict[str, Any]) -> None:
    service = jaeger["service"]
    assert {"jaeger_storage", "jaeger_query", "healthcheckv2"} <= set(service["extensions"])
    assert set(service["extensions"]) <= set(jaeger["extensions"])
    traces = service["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    assert "batch" in traces["processors"]
    assert traces["exporters"] == ["jaeger_storage_exporter"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(traces[kind]) <= set(jaeger[kind]), f"undefined {kind}"


def test_jaeger_listens_where_compose_expects(
    jaeger: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    protocols = jaeger["receivers"]["otlp"]["protocols"]
    assert listen_port(protocols["grpc"]["endpoint"]) == 4317
    assert listen_port(protocols["http"]["endpoint"]) == 4318
    extensions = jaeger["extensions"]
    assert listen_port(extensions["jaeger_query"]["http"]["endpoint"]) == 16686
    health = extensions["healthcheckv2"]
    assert health["use_v2"] is True  # serves /status, which the compose health check probes
    assert listen_port(health["http"]["endpoint"]) == 13133
    # Reachable from the other containers, not only from inside Jaeger's.
    for endpoint in (protocols["grpc"]["endpoint"], protocols["http"]["endpoint"]):
        assert endpoint.startswith("0.0.0.0:")
    assert extensions["jaeger_query"]["http"]["endpoint"].startswith("0.0.0.0:")


def test_jaeger_stores_a_bounded_number_of_traces_in_memory(jaeger: dict[str, Any]) -> None:
    extensions = jaeger["extensions"]
    backends = extensions["jaeger_storage"]["backends"]
    store = extensions["jaeger_query"]["storage"]["traces"]
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] == store
    max_traces = backends[store]["memory"]["max_traces"]
    assert isinstance(max_traces, int)
    assert max_traces > 0


# ---- the load balancer and the replicas ------------------------------------------------------


def haproxy_lines() -> list[str]:
    """haproxy.cfg's lines, comments and blank lines dropped, whitespace collapsed."""
    lines = []
    for raw in HAPROXY_CONFIG.read_text(encoding="utf-8").splitlines():
        line = " ".join(raw.split("#", 1)[0].split())
        if line:
            lines.append(line)
    return lines


def haproxy_default(variable: str) -> str:
    """The default of ``"${VARIABLE-default}"`` in haproxy.cfg (one default per variable)."""
    found = {
        match
        for line in haproxy_lines()
        for match in re.findall(rf"\$\{{{variable}-([^}}]*)\}}", line)
    }
    assert len(found) == 1, f"{variable}: defaults {found}"
    return found.pop()


def haproxy_port(variable: str) -> int:
    """The port of a ``bind "${VARIABLE-:port}"`` line."""
    return int(haproxy_default(variable).rsplit(":", 1)[1])


def test_the_simulator_scales(services: dict[str, dict[str, Any]]) -> None:
    """`--scale simulator=N` needs a service nothing ties to one container."""
    simulator = services["simulator"]
    assert "container_name" not in simulator
    assert "hostname" not in simulator
    assert not simulator.get("ports"), "a published host port allows one replica only"
    assert "deploy" not in simulator, "the replica count is --scale's"


def test_the_load_balancer_is_wired(services: dict[str, dict[str, Any]]) -> None:
    lb = services["lb"]
    # The mounted file is the one the image's own command reads; nothing overrides it.
    assert "command" not in lb
    assert "entrypoint" not in lb
    assert {split_volume(spec)[1] for spec in lb["volumes"]} == {HAPROXY_IMAGE_CONFIG}
    # It listens where compose publishes it: the API and its own metrics.
    assert {haproxy_port("FRONTEND_BIND"), haproxy_port("STATS_BIND")} == PORTS["lb"]
    # It looks the replicas up by the service's name, at the port they listen on.
    simulator_port = int(flag(command_of(services["simulator"]), "--port"))
    assert haproxy_default("SIMULATOR_ADDRESS") == f"simulator:{simulator_port}"
    # The traffic generator sends through it, so a job's load is spread over the replicas.
    env = environment(services["simulator"])
    assert host_and_port(env["FAILURE_LAB_TARGET_URL"]) == ("lb", haproxy_port("FRONTEND_BIND"))


def test_haproxy_balances_user_requests_and_pins_control_calls() -> None:
    lines = haproxy_lines()
    sections: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.split()[0] in {"global", "defaults", "resolvers", "frontend", "backend"}:
            current = line
            sections[current] = []
        else:
            sections[current].append(line)
    frontend = sections["frontend simulator"]
    assert "use_backend users if { path_beg /api/ }" in frontend
    assert "default_backend control" in frontend
    assert "balance roundrobin" in sections["backend users"]
    assert "balance first" in sections["backend control"]
    for backend in ("backend users", "backend control"):
        body = sections[backend]
        (template,) = [line for line in body if line.startswith("server-template ")]
        assert '"${SIMULATOR_ADDRESS-simulator:8001}"' in template, template
        (defaults,) = [line for line in body if line.startswith("default-server ")]
        # Liveness: an outage of Redis is the lab's to show, not a reason to take replicas out.
        assert "http-check send meth GET uri /health/live ver HTTP/1.1 hdr Host localhost" in body
        # Found by DNS, health checked, started before any replica resolves.
        assert {"check", "resolvers", "init-addr"} <= set(defaults.split()), defaults
        # `first` sends to the next server once one is full: no maxconn, so it never is.
        assert "maxconn" not in defaults
    assert "parse-resolv-conf" in sections["resolvers docker"]
    stats = sections["frontend stats"]
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats
    assert "monitor-uri /health" in stats


def test_haproxy_waits_longer_than_the_shim_for_a_replica() -> None:
    """A forwarded burst may take the shim's whole forward timeout; HAProxy must not cut it
    first with a bare 504."""
    timeouts = {
        line.split()[1]: line.split()[2] for line in haproxy_lines() if line.startswith("timeout ")
    }
    seconds = float(timeouts["server"].removesuffix("s"))
    assert seconds > Settings.model_fields["forward_timeout_seconds"].default
    assert float(timeouts["client"].removesuffix("s")) >= seconds


def test_prometheus_finds_every_replica_by_dns(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    simulator = jobs["simulator"]
    assert "static_configs" not in simulator
    (lookup,) = simulator["dns_sd_configs"]
    simulator_port = int(flag(command_of(services["simulator"]), "--port"))
    assert lookup["names"] == ["simulator"]
    assert lookup["type"] == "A"
    assert lookup["port"] == simulator_port
    assert jobs["haproxy"]["static_configs"] == [{"targets": [f"lb:{haproxy_port('STATS_BIND')}"]}]


def test_dockerignore_leaves_out_the_stack_files() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"haproxy", "deploy"} <= patterns
