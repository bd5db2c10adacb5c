"""The deploy files agree with the code: settings, commands, ports, probes, topics, versions.

Nothing in deploy/ is run by Gemba's tests (no Docker engine, no cluster), so these tests
read the files and hold them against what the code declares: the Settings fields, the
command line's own parser, the pages and topics of a worker built from each container's
environment, and the Kubernetes OpenAPI schemas (bundled by kubernetes-validate). Nothing
is built, started or downloaded; an autouse fixture refuses any connection off this machine.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import faust
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices

from streams.cli.main import cli
from streams.cli.serve import EXAMPLE_ASSUMPTIONS
from streams.dashboard.server import HOST as DASHBOARD_HOST
from streams.kafka.broker import (
    CLUSTER_BROKER_CONFIG,
    CLUSTER_MIN_INSYNC_REPLICAS,
    CLUSTER_REPLICATION_FACTOR,
)
from streams.kafka.clients import ensure_topic_for
from streams.settings import PROJECT_ROOT, WILDCARD_HOSTS, Settings
from streams.worker import run as worker_module
from streams.worker.alerts import alerts_topic
from streams.worker.app import create_app
from streams.worker.metrics import LEADER_TOPIC_SUFFIX

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DOCKERFILE.with_name(f"{DOCKERFILE.name}.dockerignore")  # BuildKit's rule
PYPROJECT: dict[str, Any] = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
STRIMZI_API = "kafka.strimzi.io/v1beta2"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SECRET_VALUE = "a-value-from-a-kubernetes-secret"
POD_IP = "192.0.2.10"  # a documentation address, only ever a string here
KAFKA_MIN_SESSION_TIMEOUT_MS = 6000  # the brokers' group.min.session.timeout.ms default
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # most resource names
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # a Service's name
POM = "{http://maven.apache.org/POM/4.0.0}"
VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Resource = dict[str, Any]


# --- Offline: nothing but loopback is ever contacted ------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    """Refuse connections and name look-ups beyond this machine while this module runs."""
    getaddrinfo = socket.getaddrinfo

    def local(host: object) -> bool:
        if host in {None, "localhost"}:
            return True
        try:
            return ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            return False

    def guarded(connect: Any) -> Any:
        def guarded_connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in {socket.AF_INET, socket.AF_INET6} and not local(address[0]):
                raise OSError(f"test_deploy_files is offline: refused to connect to {address}")
            return connect(sock, address)

        return guarded_connect

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host):
            raise OSError(f"test_deploy_files is offline: refused to look up {host}")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for method in ("connect", "connect_ex"):
            patch.setattr(socket.socket, method, guarded(getattr(socket.socket, method)))
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield


# --- Reading the files ------------------------------------------------------------------


def yaml_documents(path: Path) -> list[Resource]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.y*ml") if p != KUSTOMIZATION)


@cache
def manifests() -> tuple[Resource, ...]:
    """Every Kubernetes resource in deploy/k8s (not the kustomization)."""
    return tuple(doc for path in manifest_files() for doc in yaml_documents(path))


def resources(kind: str, api_version: str | None = None) -> list[Resource]:
    return [
        doc
        for doc in manifests()
        if doc["kind"] == kind and api_version in {None, doc["apiVersion"]}
    ]


def the_resource(kind: str, name: str) -> Resource:
    found = [doc for doc in resources(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"deploy/k8s should hold one {kind} {name!r}, found {len(found)}"
    return found[0]


@cache
def compose() -> Resource:
    document: Resource = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


@dataclass(frozen=True)
class Image:
    """What deploy/Dockerfile builds, as far as these tests need it."""

    base: str
    env: Mapping[str, str]
    copies: tuple[tuple[str, ...], ...]  # the sources of each COPY
    runs: tuple[str, ...]
    user: str
    entrypoint: Any  # a list in exec form, a string in shell form
    cmd: Any


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += " " + line.removesuffix("\\")
        if not line.endswith("\\"):
            instruction, _, arguments = pending.strip().partition(" ")
            yield instruction.upper(), arguments.strip()
            pending = ""


def exec_or_shell_form(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


@cache
def image() -> Image:
    found: dict[str, Any] = {"env": {}, "copies": [], "runs": [], "user": "root"}
    for instruction, arguments in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction == "FROM":
            found["base"] = arguments.split()[0]
        elif instruction == "ENV":
            found["env"].update(item.split("=", 1) for item in shlex.split(arguments))
        elif instruction == "COPY":
            found["copies"].append(tuple(shlex.split(arguments)[:-1]))
        elif instruction == "RUN":
            found["runs"].append(arguments)
        elif instruction == "USER":
            found["user"] = arguments
        elif instruction in {"ENTRYPOINT", "CMD"}:
            found[instruction.lower()] = exec_or_shell_form(arguments)
    found["copies"], found["runs"] = tuple(found["copies"]), tuple(found["runs"])
    return Image(**found)


# --- Gemba's processes, as the files start them -----------------------------------------


@dataclass(frozen=True)
class GembaContainer:
    """One process started from the Gemba image, as a deploy file describes it."""

    where: str  # "compose worker-1", "k8s StatefulSet/gemba-archiver archiver"
    argv: tuple[str, ...]  # the image's entrypoint and the arguments, as run
    env: Mapping[str, str]  # the image's ENV, then the file's (secrets as placeholders)
    spec: Mapping[str, Any]  # the compose service, or the Kubernetes container
    pod: Mapping[str, Any]  # the pod template (Kubernetes), or the service again (compose)
    workload: Mapping[str, Any]  # the Deployment, StatefulSet... (or the service again)
    replicas: int

    @property
    def subcommand(self) -> str:
        return self.argv[1] if len(self.argv) > 1 else ""


def words(command: Any) -> list[str]:
    """A command as written: a list (exec form) or a string (split as a shell would)."""
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command or []]


def image_argv(entrypoint: Any, arguments: Any) -> tuple[str, ...]:
    """The argv a container runs: an entrypoint of its own replaces the image's and its CMD."""
    if arguments is None and entrypoint is None:
        arguments = image().cmd
    return (*words(image().entrypoint if entrypoint is None else entrypoint), *words(arguments))


def k8s_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The variables a Kubernetes container's process sees, $(VAR) references expanded."""
    env = dict(image().env)
    for source in container.get("envFrom", []):
        env.update(the_resource("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            value = VARIABLE_REFERENCE.sub(lambda m: env.get(m[1], m[0]), str(item["value"]))
        elif "fieldRef" in item.get("valueFrom", {}):
            value = POD_IP if item["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" else "x"
        else:
            value = SECRET_VALUE
        env[item["name"]] = value
    return env


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = dict(image().env)
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({name: str(value).lower() if isinstance(value, bool) else str(value)
                for name, value in declared.items()})  # fmt: skip
    return env


def k8s_workloads() -> list[Resource]:
    return [doc for doc in manifests() if doc["kind"] in WORKLOAD_KINDS]


@cache
def k8s_containers() -> tuple[GembaContainer, ...]:
    found = []
    for workload in k8s_workloads():
        pod = workload["spec"]["template"]
        for container in pod["spec"]["containers"]:
            argv = image_argv(container.get("command"), container.get("args"))
            where = f"k8s {workload['kind']}/{workload['metadata']['name']} {container['name']}"
            replicas = workload["spec"].get("replicas", 1)
            env = k8s_env(container)
            found.append(GembaContainer(where, argv, env, container, pod, workload, replicas))
    return tuple(found)


def is_gemba_service(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, Mapping):
        return False
    context = COMPOSE_FILE.parent / str(build.get("context", "."))
    return (context / str(build.get("dockerfile", "Dockerfile"))).resolve() == DOCKERFILE


@cache
def compose_containers() -> tuple[GembaContainer, ...]:
    return tuple(
        GembaContainer(
            f"compose {name}",
            image_argv(service.get("entrypoint"), service.get("command")),
            compose_env(service),
            service,
            service,
            service,
            (service.get("deploy") or {}).get("replicas", service.get("scale", 1)),
        )
        for name, service in compose()["services"].items()
        if is_gemba_service(service)
    )


def all_containers() -> tuple[GembaContainer, ...]:
    return (*compose_containers(), *k8s_containers())


def workers(containers: Sequence[GembaContainer]) -> list[GembaContainer]:
    return [c for c in containers if c.subcommand == "worker"]


# --- What the code declares -------------------------------------------------------------


@cache
def setting_env_names() -> frozenset[str]:
    """The variables Settings reads: GEMBA_<field>, or a field's own aliases."""
    prefix = Settings.model_config.get("env_prefix") or ""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}")
    return frozenset(name.upper() for name in names)


@cache
def faust_env_names() -> frozenset[str]:
    """The variables Faust reads itself (BROKER_SESSION_TIMEOUT, NODE_CANONICAL_URL, ...)."""
    return frozenset(p.env_name for p in faust.Settings.SETTINGS.values() if p.env_name)


@cache
def python_env_names() -> frozenset[str]:
    help_text = subprocess.run(
        [sys.executable, "--help-env"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(re.findall(r"\bPYTHON[A-Z_]+\b", help_text))


@contextmanager
def process_environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ as the container's process sees it, for every name Gemba or Faust reads."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper() in setting_env_names() or name in faust_env_names():
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        yield


def settings_of(container: GembaContainer) -> Settings:
    with process_environment(container.env):
        return Settings()


def parse_gemba(argv: Sequence[str]) -> click.Context:
    """The context `gemba ...` would run in, from the CLI's own parser; nothing is invoked."""
    if list(argv[:1]) != ["gemba"]:
        raise click.UsageError(f"the program is {argv[:1]}, not gemba")
    context = click.Context(cli, info_name="gemba")
    command: click.Command = cli
    name, rest = "gemba", list(argv[1:])
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError(f"`{name}` needs a subcommand")
        found_name, found, rest = command.resolve_command(context, rest)
        assert found is not None and found_name is not None
        name, command = found_name, found
        if isinstance(command, click.Group):
            context = click.Context(command, info_name=name, parent=context)
    return command.make_context(name, rest, parent=context)


@dataclass(frozen=True)
class WorkerApp:
    """The Faust app a worker container would run, built (never started) from its env."""

    settings: Settings
    app: faust.App
    topics: Mapping[str, tuple[int, Mapping[str, str]]]  # name -> (partitions, config)
    routes: frozenset[str]


def topics_of(settings: Settings, app: faust.App) -> dict[str, tuple[int, Mapping[str, str]]]:
    """Every topic the worker creates, declares or reads, with its partitions and config."""
    found: dict[str, tuple[int, Mapping[str, str]]] = {}
    default_config = inspect.signature(ensure_topic_for).parameters["config"]

    def record(
        settings: Settings,
        topic: str,
        config: Mapping[str, str] = default_config.default,
        partitions: int | None = None,
    ) -> bool:
        found[topic] = (partitions or settings.topic_partitions, dict(config))
        return True

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker_module, "ensure_topic_for", record)
        worker_module.ensure_topics(settings, app)
    alerts = alerts_topic(app, settings)
    found[alerts.get_topic_name()] = (alerts.partitions or 0, dict(alerts.config or {}))
    found[f"{app.conf.id}-{LEADER_TOPIC_SUFFIX}"] = (1, {})
    for agent in app.agents.values():
        for topic in agent.channel.topics:
            found.setdefault(topic, (settings.topic_partitions, {}))
    return found


@pytest.fixture(scope="module")
def worker_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WorkerApp]:
    """Every `gemba worker` container of the deploy files, as the app it would run."""
    built = {}
    for container in workers(all_containers()):
        scratch = tmp_path_factory.mktemp("worker")
        with process_environment(container.env):  # Faust reads its own variables too
            settings = Settings()
            # No CA file here: the app is built as PLAINTEXT; the rest is the container's.
            local = settings.model_copy(
                update={
                    "kafka_security_protocol": "PLAINTEXT",
                    "kafka_ssl_cafile": None,
                    "state_dir": scratch,
                    "duckdb_path": scratch / "history.duckdb",
                }
            )
            app = create_app(local)
        web: Any = app.web  # Faust's aiohttp driver: the routes are aiohttp's
        routes = frozenset(r.resource.canonical for r in web.web_app.router.routes())
        built[container.where] = WorkerApp(settings, app, topics_of(local, app), routes)
    return built


def k8s_kafka_topics() -> dict[str, Resource]:
    """KafkaTopic resources by the Kafka topic's name (spec.topicName, else metadata.name)."""
    return {
        doc["spec"].get("topicName", doc["metadata"]["name"]): doc
        for doc in resources("KafkaTopic", STRIMZI_API)
    }


def under(path: Path, mount: str) -> bool:
    return path == Path(mount) or Path(mount) in path.parents


def mount_of(path: Path, mounts: Mapping[str, str]) -> str | None:
    """The volume mounted deepest above `path` ({mount path: volume}), if any."""
    holding = [m for m in mounts if under(path, m)]
    return mounts[max(holding, key=len)] if holding else None


def k8s_mounts(container: GembaContainer) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.spec.get("volumeMounts", [])}


def compose_mounts(container: GembaContainer) -> dict[str, str]:
    mounts = {}
    for volume in container.spec.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def mounts(container: GembaContainer) -> dict[str, str]:
    """{mount path: volume} of a compose service or a Kubernetes container."""
    if container.where.startswith("compose"):
        return compose_mounts(container)
    return k8s_mounts(container)


def deployments() -> dict[str, tuple[GembaContainer, ...]]:
    return {"compose": compose_containers(), "k8s": k8s_containers()}


def dashboard_port(container: GembaContainer) -> int:
    port: int | None = parse_gemba(container.argv).params["port"]
    return port or settings_of(container).dashboard_port


def loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


# --- Every file -------------------------------------------------------------------------


def test_every_gemba_variable_named_anywhere_in_deploy_is_a_setting() -> None:
    unknown = {
        f"{path.relative_to(DEPLOY)}: {name}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"\bGEMBA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
        if name not in setting_env_names()
    }
    assert not unknown, f"not a Settings field (streams/settings.py): {sorted(unknown)}"


def test_every_variable_set_for_a_gemba_container_is_read_by_gemba_faust_or_python() -> None:
    unknown = []
    for container in all_containers():
        referenced = set(VARIABLE_REFERENCE.findall(" ".join(map(str, _set_values(container)))))
        read = setting_env_names() | faust_env_names() | python_env_names() | referenced
        unknown += [f"{container.where}: {name}" for name in container.env if name not in read]
    assert not unknown


def _set_values(container: GembaContainer) -> list[Any]:
    """The values as written in the file (before $(VAR) references are expanded)."""
    return [item.get("value", "") for item in container.spec.get("env", [])]


def test_every_gemba_containers_environment_passes_settings_validation() -> None:
    refused = []
    for container in (*all_containers(), _image_default()):
        try:
            settings_of(container)
        except ValueError as exc:  # pydantic's ValidationError
            refused.append(f"{container.where}: {exc}")
    assert not refused


def _image_default() -> GembaContainer:
    """The image run with no arguments and nothing set (`docker run gemba:...`)."""
    argv = image_argv(None, None)
    return GembaContainer("the image's default", argv, dict(image().env), {}, {}, {}, 1)


def test_every_gemba_container_runs_a_real_subcommand_with_real_options() -> None:
    refused = []
    for container in (*all_containers(), _image_default()):
        try:
            parse_gemba(container.argv)
        except click.ClickException as exc:
            command = shlex.join(container.argv)
            refused.append(f"{container.where}: {command}: {exc.format_message()}")
    assert not refused


def test_every_image_tag_in_deploy_is_the_project_version() -> None:
    version = PYPROJECT["project"]["version"]
    tags = [
        f"{path.relative_to(DEPLOY)}: gemba:{tag}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for tag in re.findall(r"\bgemba:(\d[\w.]*\w)", path.read_text())
    ]
    kustomize = yaml.safe_load(KUSTOMIZATION.read_text())
    tags += [f"kustomization: {i['name']}:{i['newTag']}" for i in kustomize.get("images", [])]
    assert tags, "no image tag found in deploy/"
    assert all(tag.endswith(f":{version}") for tag in tags), tags


# --- deploy/Dockerfile ------------------------------------------------------------------


def test_the_images_python_satisfies_requires_python() -> None:
    match = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", image().base)
    assert match, f"the base image {image().base} is not an official python:X.Y image"
    assert match[1] in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_image_runs_gemba_in_exec_form_so_sigterm_reaches_it() -> None:
    assert image().entrypoint == ["gemba"]
    assert "gemba" in PYPROJECT["project"]["scripts"]
    assert isinstance(image().cmd, list), "CMD in shell form would run under /bin/sh -c"


def test_the_image_installs_the_project_as_pyproject_declares_it() -> None:
    copied = {source.rstrip("/") for sources in image().copies for source in sources}
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {pattern.rstrip("*") for pattern in packages}
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    # What `gemba serve` looks for beside the code (an editable install keeps it there).
    assert any(under(EXAMPLE_ASSUMPTIONS.relative_to(PROJECT_ROOT), c) for c in copied)
    installs = [
        shlex.split(step)[2:]
        for run in image().runs
        for step in run.split("&&")
        if shlex.split(step)[:2] == ["pip", "install"]
    ]
    targets = [[word for word in install if not word.startswith("-")] for install in installs]
    assert targets == [["."]], f"pip should install the checkout itself, no extras: {installs}"


def test_the_images_numeric_user_owns_the_state_dir() -> None:
    assert image().user.isdigit() and int(image().user) != 0
    useradd = next(shlex.split(step) for run in image().runs for step in run.split("&&")
                   if shlex.split(step)[:1] == ["useradd"])  # fmt: skip
    assert useradd[useradd.index("--uid") + 1] == image().user
    assert useradd[useradd.index("--home-dir") + 1] == image().env["GEMBA_STATE_DIR"]


def docker_ignored(path: str, rules: Sequence[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent of it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for include, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not include
    return ignored


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include, pattern = line.startswith("!"), line.removeprefix("!").strip("/")
        regex = "".join(
            "(.*/)?" if token == "**/" else ".*" if token == "**" else "[^/]*" if token == "*"
            else "[^/]" if token == "?" else re.escape(token)
            for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern)
        )  # fmt: skip
        rules.append((include, re.compile(regex)))
    return rules


def test_the_build_context_sends_what_the_image_copies_and_not_the_virtualenv() -> None:
    assert DOCKERIGNORE.is_file(), "the context is the checkout's root: .venv would be sent"
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    copied = [PROJECT_ROOT / source for sources in image().copies for source in sources]
    files = [p for c in copied for p in ([c] if c.is_file() else c.rglob("*")) if p.is_file()]
    sent = [str(p.relative_to(PROJECT_ROOT)) for p in files if "__pycache__" not in p.parts]
    assert sent and not [p for p in sent if docker_ignored(p, rules)]
    for heavy in (".venv", ".gemba", ".git", "streams/__pycache__/app.cpython-311.pyc"):
        assert docker_ignored(heavy, rules), f"{heavy} would be sent to the builder"


# --- deploy/docker-compose.yml ----------------------------------------------------------


def test_compose_services_build_the_dockerfile_and_name_what_exists() -> None:
    services, volumes = compose()["services"], compose().get("volumes") or {}
    assert compose_containers(), "no service builds deploy/Dockerfile"
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for needed in depends if isinstance(depends, list) else depends.items():
            target, condition = (needed, {}) if isinstance(needed, str) else needed
            if target not in services:
                problems.append(f"{name} depends on a service {target!r} that is not there")
            elif condition.get("condition") == "service_healthy" and (
                "healthcheck" not in services[target]
            ):
                problems.append(f"{name} waits for {target} to be healthy: no healthcheck")
    for container in compose_containers():
        for source in compose_mounts(container).values():
            if not source.startswith((".", "/")) and source not in volumes:
                problems.append(f"{container.where} mounts an undeclared volume {source!r}")
    assert not problems


def kafka_service() -> Resource:
    found: list[Resource] = [s for s in compose()["services"].values()
             if str(s.get("image", "")).startswith("apache/kafka:")]  # fmt: skip
    assert len(found) == 1, "docker-compose.yml should run one apache/kafka broker"
    return found[0]


def test_the_compose_broker_is_the_kafka_version_gemba_installs() -> None:
    pinned = kafka_service()["image"].partition(":")[2]
    pom = ET.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    pom_version = pom.findtext(f"{POM}properties/{POM}kafka.version")
    assert pinned == Settings.model_fields["kafka_version"].default == pom_version


def test_the_compose_broker_is_where_gemba_looks_by_default() -> None:
    kafka_env = kafka_service()["environment"]
    advertised = re.search(r"PLAINTEXT://([^,]+)", kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    listening = re.search(r"PLAINTEXT://[^,:]*:(\d+)", kafka_env["KAFKA_LISTENERS"])
    assert advertised and listening
    host, port = advertised[1].rsplit(":", 1)
    assert f"{host}:{port}:{listening[1]}" in kafka_service()["ports"]
    with process_environment({}):
        assert Settings().bootstrap_servers == advertised[1]
    for container in compose_containers():
        assert settings_of(container).bootstrap_servers == advertised[1], container.where


def test_compose_services_on_the_hosts_network_stay_on_loopback_on_ports_of_their_own() -> None:
    published = [str(p).split(":")[-2] for s in compose()["services"].values()
                 for p in s.get("ports", [])]  # fmt: skip
    listening: list[str] = []
    for container in compose_containers():
        if container.spec.get("network_mode") != "host":
            continue
        settings = settings_of(container)
        if container.subcommand == "worker":
            assert loopback(settings.worker_web_host), f"{container.where} leaves loopback"
            listening.append(str(settings.worker_web_port))
        elif container.subcommand == "serve":
            listening.append(str(dashboard_port(container)))
    clashes = {port for port, n in Counter(listening + published).items() if n > 1}
    assert not clashes, f"two services would listen on the host's port(s) {clashes}"


# --- deploy/k8s -------------------------------------------------------------------------


def test_every_manifest_parses_into_named_resources() -> None:
    for doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        name = DNS_LABEL if doc["kind"] == "Service" else DNS_SUBDOMAIN
        assert name.fullmatch(doc["metadata"]["name"]), f"{doc['kind']} {doc['metadata']['name']}"


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == [path.name for path in manifest_files()]


def test_kubernetes_resources_validate_against_the_openapi_schemas() -> None:
    core = [doc for doc in manifests() if not doc["apiVersion"].startswith("kafka.strimzi.io/")]
    assert core
    errors = []
    for doc in core:
        try:
            kubernetes_validate.validate(doc, latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors


def test_every_container_image_is_the_one_kustomize_retags() -> None:
    renamed = {i["name"] for i in yaml.safe_load(KUSTOMIZATION.read_text()).get("images", [])}
    images = {c.spec["image"] for c in k8s_containers()}
    assert images and images <= renamed, f"kustomize would leave {images - renamed} as written"


def test_selectors_match_the_pods_they_select() -> None:
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in k8s_workloads()]
    for workload in k8s_workloads():
        wanted = workload["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    for doc in resources("Service") + resources("PodDisruptionBudget"):
        spec = doc["spec"]
        wanted = spec["selector"].get("matchLabels", spec["selector"])
        assert any(wanted.items() <= labels.items() for labels in pods), doc["metadata"]["name"]


def test_statefulsets_are_governed_by_a_headless_service_in_the_manifests() -> None:
    for statefulset in resources("StatefulSet"):
        service = the_resource("Service", statefulset["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None"
        labels = statefulset["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


def test_variable_references_name_variables_defined_before_them() -> None:
    dangling = []
    for container in k8s_containers():
        defined = set(image().env)
        for source in container.spec.get("envFrom", []):
            defined |= the_resource("ConfigMap", source["configMapRef"]["name"])["data"].keys()
        for item in container.spec.get("env", []):
            missing = set(VARIABLE_REFERENCE.findall(str(item.get("value", "")))) - defined
            dangling += [f"{container.where}: {item['name']} uses $({m})" for m in missing]
            defined.add(item["name"])
    assert not dangling


def link_variables(service_name: str) -> re.Pattern[str]:
    """The docker-link variables the kubelet sets in every pod for a Service with an IP."""
    prefix = re.escape(service_name.upper().replace("-", "_"))
    suffix = r"(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
    return re.compile(f"{prefix}_{suffix}")


def test_no_service_link_variable_looks_like_a_gemba_setting() -> None:
    services = [s["metadata"]["name"] for s in resources("Service")
                if s["spec"].get("clusterIP") != "None"]  # fmt: skip
    for kafka in resources("Kafka", STRIMZI_API):  # the Services Strimzi creates
        cluster = kafka["metadata"]["name"]
        for listener in kafka["spec"]["kafka"]["listeners"]:
            internal = listener["type"] == "internal"
            services.append(f"{cluster}-kafka-bootstrap" if internal
                            else f"{cluster}-kafka-{listener['name']}-bootstrap")  # fmt: skip
    linked = [c.where for c in k8s_containers() if c.pod["spec"].get("enableServiceLinks", True)]
    clashes = {
        f"Service {service} sets {name}"
        for service in services
        for name in setting_env_names()
        if link_variables(service).fullmatch(name)
    }
    assert not (linked and clashes), (
        f"{sorted(clashes)} in {linked}: rename the Service, or set enableServiceLinks: false"
    )


def test_pods_run_as_the_images_numeric_non_root_user() -> None:
    for workload in k8s_workloads():
        security = workload["spec"]["template"]["spec"].get("securityContext", {})
        assert security.get("runAsNonRoot") is True, workload["metadata"]["name"]
        assert str(security.get("fsGroup", image().user)) == image().user


def test_kubernetes_workers_listen_on_every_interface_so_probes_reach_them() -> None:
    for container in workers(k8s_containers()):
        host = settings_of(container).worker_web_host
        assert host in WILDCARD_HOSTS, f"{container.where} listens on {host} only"


def test_probes_and_scrape_annotations_ask_pages_the_worker_serves_on_its_port(
    worker_apps: dict[str, WorkerApp],
) -> None:
    assert workers(k8s_containers())
    for container in workers(k8s_containers()):
        built = worker_apps[container.where]
        port = built.settings.worker_web_port
        named = {p["name"]: p["containerPort"] for p in container.spec.get("ports", [])}
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            get = container.spec[probe]["httpGet"]
            assert get["path"] == path and path in built.routes, (container.where, probe)
            assert named.get(get["port"], get["port"]) == port, (container.where, probe)
        annotations = container.pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", container.where
        assert annotations["prometheus.io/port"] == str(port), container.where
        assert annotations["prometheus.io/path"] in built.routes, container.where


def test_the_dashboard_probe_asks_the_port_gemba_serve_listens_on() -> None:
    dashboards = [c for c in k8s_containers() if c.subcommand == "serve"]
    assert dashboards
    for container in dashboards:
        # `gemba serve` listens on 127.0.0.1 only: the kubelet's httpGet cannot reach it.
        program, flag, code = container.spec["livenessProbe"]["exec"]["command"]
        assert (program, flag) == ("python", "-c")
        compile(code, container.where, "exec")
        url = re.search(r"http://([^/:]+):(\d+)/", code)
        assert url and url[1] == DASHBOARD_HOST, container.where
        assert int(url[2]) == dashboard_port(container), container.where


def test_faust_settings_from_the_environment_reach_the_worker_app(
    worker_apps: dict[str, WorkerApp],
) -> None:
    kafka_config = resources("Kafka", STRIMZI_API)[0]["spec"]["kafka"].get("config", {})
    min_session_ms = kafka_config.get("group.min.session.timeout.ms", KAFKA_MIN_SESSION_TIMEOUT_MS)
    for container in workers(k8s_containers()):
        conf = worker_apps[container.where].app.conf
        if "NODE_CANONICAL_URL" in container.env:  # deal pages forwarded to the pod's IP
            url = conf.canonical_url
            port = worker_apps[container.where].settings.worker_web_port
            assert (url.host, url.port) == (POD_IP, port), container.where
        assert conf.broker_heartbeat_interval * 3 <= conf.broker_session_timeout
        assert conf.broker_session_timeout * 1000 >= min_session_ms, container.where


def test_strimzi_resources_use_v1beta2_and_belong_to_the_one_kafka_cluster() -> None:
    strimzi = [doc for doc in manifests() if doc["apiVersion"].startswith("kafka.strimzi.io/")]
    assert {doc["apiVersion"] for doc in strimzi} == {STRIMZI_API}
    (kafka,) = resources("Kafka")
    for doc in strimzi:
        if doc is not kafka:
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_the_kafka_cluster_runs_in_kraft_mode_on_node_pools() -> None:
    (kafka,) = resources("Kafka", STRIMZI_API)
    annotations = kafka["metadata"].get("annotations", {})
    assert annotations.get("strimzi.io/node-pools") == "enabled"
    assert annotations.get("strimzi.io/kraft") == "enabled"
    assert "zookeeper" not in kafka["spec"]
    # With node pools, replicas and storage belong to the pools; here they would be ignored.
    assert not {"replicas", "storage"} & kafka["spec"]["kafka"].keys()
    pools = resources("KafkaNodePool", STRIMZI_API)
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert controllers % 2 == 1, "a KRaft quorum needs an odd number of controllers"
    # KafkaTopic and KafkaUser resources need the entity operator's two operators.
    assert {"topicOperator", "userOperator"} <= kafka["spec"]["entityOperator"].keys()


def test_one_kafka_node_can_be_down_as_the_replication_settings_promise() -> None:
    (kafka,) = resources("Kafka", STRIMZI_API)
    config = kafka["spec"]["kafka"]["config"]
    pools = resources("KafkaNodePool", STRIMZI_API)
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    replicas = [t["spec"]["replicas"] for t in k8s_kafka_topics().values()]
    for factor in (*replicas, config["default.replication.factor"],
                   config["offsets.topic.replication.factor"]):  # fmt: skip
        assert config["min.insync.replicas"] < factor <= brokers
    transactions = "transaction.state.log"
    assert config[f"{transactions}.min.isr"] < config[f"{transactions}.replication.factor"]


def test_the_kafka_cluster_replicates_as_the_local_cluster_gemba_tests_a_node_loss_on() -> None:
    (kafka,) = resources("Kafka", STRIMZI_API)
    config = {name: str(value) for name, value in kafka["spec"]["kafka"]["config"].items()}
    required = {
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
    }  # fmt: skip
    differ = {
        name: (config.get(name), value)
        for name, value in CLUSTER_BROKER_CONFIG.items()
        if name in required or name in config
        if config.get(name) != value
    }

    assert required <= CLUSTER_BROKER_CONFIG.keys()
    assert not differ, f"kafka.yaml says, streams/kafka/broker.py says: {differ}"
    assert (CLUSTER_REPLICATION_FACTOR, CLUSTER_MIN_INSYNC_REPLICAS) == (3, 2)


def test_kubernetes_workers_and_faust_create_topics_with_the_clusters_replication(
    worker_apps: dict[str, WorkerApp],
) -> None:
    declared = {t["spec"]["replicas"] for t in k8s_kafka_topics().values()}
    assert declared == {CLUSTER_REPLICATION_FACTOR}, "topics.yaml"
    for container in workers(k8s_containers()):
        built = worker_apps[container.where]
        assert built.settings.topic_replication_factor == CLUSTER_REPLICATION_FACTOR, (
            container.where
        )
        assert built.app.conf.topic_replication_factor == CLUSTER_REPLICATION_FACTOR, (
            container.where
        )


def test_compose_workers_ask_for_no_more_replicas_than_its_brokers() -> None:
    brokers = [
        service
        for service in compose()["services"].values()
        if str(service.get("image", "")).startswith("apache/kafka:")
    ]
    for container in workers(compose_containers()):
        factor = settings_of(container).topic_replication_factor
        assert factor <= len(brokers), f"{container.where}: replication {factor}"


def test_the_configmap_reaches_kafka_the_way_the_cluster_listens() -> None:
    (kafka,) = resources("Kafka", STRIMZI_API)
    cluster = kafka["metadata"]["name"]
    for container in k8s_containers():
        settings = settings_of(container)
        host, port = settings.bootstrap_servers.rsplit(":", 1)
        assert host == f"{cluster}-kafka-bootstrap", container.where
        listeners = {x["port"]: x for x in kafka["spec"]["kafka"]["listeners"]}
        assert int(port) in listeners, f"{container.where}: no listener on port {port}"
        listener = listeners[int(port)]
        scram = listener.get("authentication", {}).get("type", "")
        protocol = ("SASL_" if scram.startswith("scram") else "") + (
            "SSL" if listener.get("tls") else "PLAINTEXT"
        )
        assert settings.kafka_security_protocol == protocol, container.where
        assert settings.kafka_sasl_mechanism == scram.upper(), container.where
        user = the_resource("KafkaUser", settings.kafka_sasl_username or "")
        assert user["spec"]["authentication"]["type"] == scram
        env = {item["name"]: item for item in container.spec["env"]}
        secret = env["GEMBA_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": user["metadata"]["name"], "key": "password"}, container.where
        assert settings.kafka_ssl_cafile and settings.kafka_ssl_cafile.name == "ca.crt"
        volume_name = mount_of(settings.kafka_ssl_cafile, k8s_mounts(container))
        volumes = {v["name"]: v for v in container.pod["spec"]["volumes"]}
        assert volume_name in volumes, f"{container.where}: the CA file is on no volume"
        assert volumes[volume_name]["secret"]["secretName"] == f"{cluster}-cluster-ca-cert"


def acl_allows(acls: Sequence[Resource], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        resource, pattern = acl["resource"], acl["resource"].get("name", "")
        named = pattern == "*" or (
            name.startswith(pattern) if resource.get("patternType") == "prefix" else name == pattern
        )
        operations = acl.get("operations") or [acl.get("operation")]
        if resource["type"] == kind and named and {operation, "All"} & set(operations):
            return True
    return False


def test_the_workers_kafka_user_may_use_every_topic_and_group_they_use(
    worker_apps: dict[str, WorkerApp],
) -> None:
    denied = []
    for container in workers(k8s_containers()):
        built = worker_apps[container.where]
        user = the_resource("KafkaUser", built.settings.kafka_sasl_username or "")
        acls = user["spec"]["authorization"]["acls"]
        for topic in built.topics:
            for operation in ("Read", "Write", "Create", "Describe"):
                if not acl_allows(acls, "topic", topic, operation):
                    denied.append(f"{operation} topic {topic}")
        if not acl_allows(acls, "group", built.app.conf.id, "Read"):
            denied.append(f"Read group {built.app.conf.id}")
    assert not denied


def test_topics_yaml_declares_every_topic_the_workers_use_and_no_other(
    worker_apps: dict[str, WorkerApp],
) -> None:
    declared = k8s_kafka_topics()
    used: set[str] = set()
    problems = []
    for container in workers(k8s_containers()):
        for topic, (partitions, config) in worker_apps[container.where].topics.items():
            used.add(topic)
            if topic not in declared:
                problems.append(f"{container.where} uses {topic}: not in topics.yaml")
                continue
            spec = declared[topic]["spec"]
            if spec["partitions"] != partitions:
                problems.append(f"{topic}: {spec['partitions']} partitions, not {partitions}")
            wrong = {k: v for k, v in config.items() if str(spec.get("config", {}).get(k)) != v}
            if wrong:
                problems.append(f"{topic}: config {spec.get('config')}, the worker {config}")
    problems += [f"{topic} in topics.yaml: no worker uses it" for topic in declared.keys() - used]
    assert not problems


def test_workers_of_one_app_are_no_more_than_the_partitions_of_touches() -> None:
    for where, containers in deployments().items():
        replicas: Counter[str] = Counter()
        partitions = {}
        for container in workers(containers):
            settings = settings_of(container)
            replicas[settings.app_id] += container.replicas
            topic = k8s_kafka_topics().get(settings.touches_topic) if where == "k8s" else None
            partitions[settings.app_id] = (
                topic["spec"]["partitions"] if topic else settings.topic_partitions
            )
        idle = {app: n for app, n in replicas.items() if n > partitions[app]}
        assert not idle, f"{where}: workers beyond the partitions of touches idle: {idle}"


def test_exactly_one_process_writes_the_history_archive_and_it_sends_no_webhooks() -> None:
    for containers in deployments().values():
        writers = [c for c in workers(containers) if settings_of(c).history_sink]
        assert sum(c.replicas for c in writers) == 1, [c.where for c in writers]
        assert settings_of(writers[0]).alert_webhook_url is None


def test_the_archiver_has_an_app_id_and_output_topics_of_its_own() -> None:
    def outputs(settings: Settings) -> set[str]:
        return {settings.value_streams_topic, settings.dead_letter_topic, settings.alerts_topic}

    for containers in deployments().values():
        everyone = [settings_of(c) for c in workers(containers)]
        archivers = [s for s in everyone if s.history_sink]
        folders = [s for s in everyone if not s.history_sink]
        for archiver in archivers:
            for folder in folders:
                assert archiver.app_id != folder.app_id
                assert not outputs(archiver) & outputs(folder)


def test_workers_keep_their_state_on_a_volume() -> None:
    for container in workers(all_containers()):
        state_dir = settings_of(container).state_dir
        assert mount_of(state_dir, mounts(container)), f"{container.where}: {state_dir}"


def test_the_dashboard_reads_the_archive_the_archiver_writes() -> None:
    for where, containers in deployments().items():
        (archiver,) = [c for c in workers(containers) if settings_of(c).history_sink]
        dashboards = [c for c in containers if c.subcommand == "serve"]
        path = settings_of(archiver).history_db_path
        volume = mount_of(path, mounts(archiver))
        assert volume and dashboards, f"{archiver.where} writes {path} on no volume"
        for dashboard in dashboards:
            assert settings_of(dashboard).history_db_path == path, dashboard.where
            assert mount_of(path, mounts(dashboard)) == volume, dashboard.where
            # A ReadWriteOnce claim of a StatefulSet is shared within its pod only.
            assert where == "compose" or dashboard.pod is archiver.pod, dashboard.where


def pod_volumes(workload: Mapping[str, Any]) -> list[Resource]:
    """The volumes a workload's pods get: the template's, then one per claim template."""
    claims = workload["spec"].get("volumeClaimTemplates", [])
    return [
        *workload["spec"]["template"]["spec"].get("volumes", []),
        *({"name": t["metadata"]["name"], "persistentVolumeClaim": {}} for t in claims),
    ]


def test_every_mounted_volume_is_declared_once_in_its_pod() -> None:
    for workload in k8s_workloads():
        names = Counter(volume["name"] for volume in pod_volumes(workload))
        assert max(names.values()) == 1, f"{workload['metadata']['name']}: {names}"
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in names, (workload["metadata"]["name"], mount)


def test_the_kubernetes_archive_outlives_its_pod() -> None:
    for container in workers(k8s_containers()):
        settings = settings_of(container)
        if settings.history_sink:
            volumes = {volume["name"]: volume for volume in pod_volumes(container.workload)}
            volume = volumes[mount_of(settings.history_db_path, mounts(container)) or ""]
            assert "persistentVolumeClaim" in volume, f"{container.where}: {volume}"
