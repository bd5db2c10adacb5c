"""deploy/docker-compose.yml: services, volumes, the broker, ports and replication."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from streams.settings import Settings
from tests.support.deploy_files import (
    DEPLOY,
    POM,
    Resource,
    compose,
    compose_containers,
    compose_mounts,
    dashboard_port,
    loopback,
    process_environment,
    settings_of,
    workers,
)


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


def test_compose_workers_ask_for_no_more_replicas_than_its_brokers() -> None:
    brokers = [
        service
        for service in compose()["services"].values()
        if str(service.get("image", "")).startswith("apache/kafka:")
    ]
    for container in workers(compose_containers()):
        factor = settings_of(container).topic_replication_factor
        assert factor <= len(brokers), f"{container.where}: replication {factor}"
