"""deploy/k8s: manifests against the OpenAPI schemas, selectors, variables, users,
probes, the worker app each container builds, and the volumes of its pods."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version

from streams.dashboard.server import HOST as DASHBOARD_HOST
from streams.settings import WILDCARD_HOSTS
from tests.support.deploy_files import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    KAFKA_MIN_SESSION_TIMEOUT_MS,
    KUSTOMIZATION,
    POD_IP,
    STRIMZI_API,
    VARIABLE_REFERENCE,
    Resource,
    WorkerApp,
    dashboard_port,
    image,
    k8s_containers,
    k8s_workloads,
    manifest_files,
    manifests,
    mount_of,
    mounts,
    resources,
    setting_env_names,
    settings_of,
    the_resource,
    workers,
)


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
