"""Reading deploy/ for the tests in tests/deploy: resources, the image, Gemba's containers.

Nothing in deploy/ is run by Gemba's tests (no Docker engine, no cluster), so those tests
read the files and hold them against what the code declares: the Settings fields, the
command line's own parser, the pages and topics of a worker built from each container's
environment, and the Kubernetes OpenAPI schemas (bundled by kubernetes-validate). Nothing
is built, started or downloaded; an autouse fixture (tests/deploy/conftest.py) refuses any
connection off this machine.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import faust
import pytest
import yaml
from pydantic import AliasChoices

from streams.cli.main import cli
from streams.kafka.clients import ensure_topic_for
from streams.settings import PROJECT_ROOT, Settings
from streams.worker import run as worker_module
from streams.worker.alerts import alerts_topic
from streams.worker.metrics import LEADER_TOPIC_SUFFIX

__all__ = [
    "COMPOSE_FILE",
    "DEPLOY",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "DOCKERFILE",
    "DOCKERIGNORE",
    "K8S",
    "KAFKA_MIN_SESSION_TIMEOUT_MS",
    "KUSTOMIZATION",
    "POD_IP",
    "POM",
    "PYPROJECT",
    "SECRET_VALUE",
    "STRIMZI_API",
    "VARIABLE_REFERENCE",
    "WORKLOAD_KINDS",
    "GembaContainer",
    "Image",
    "Resource",
    "WorkerApp",
    "all_containers",
    "compose",
    "compose_containers",
    "compose_env",
    "compose_mounts",
    "dashboard_port",
    "deployments",
    "dockerfile_instructions",
    "exec_or_shell_form",
    "faust_env_names",
    "image",
    "image_argv",
    "is_gemba_service",
    "k8s_containers",
    "k8s_env",
    "k8s_kafka_topics",
    "k8s_mounts",
    "k8s_workloads",
    "loopback",
    "manifest_files",
    "manifests",
    "mount_of",
    "mounts",
    "parse_gemba",
    "process_environment",
    "python_env_names",
    "resources",
    "setting_env_names",
    "settings_of",
    "the_resource",
    "topics_of",
    "under",
    "words",
    "workers",
    "yaml_documents",
]

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
