"""deploy/k8s Strimzi resources: the KRaft cluster, its replication, and the topics,
users and ACLs the workers need."""

from __future__ import annotations

from collections.abc import Sequence

from streams.kafka.broker import (
    CLUSTER_BROKER_CONFIG,
    CLUSTER_MIN_INSYNC_REPLICAS,
    CLUSTER_REPLICATION_FACTOR,
)
from tests.support.deploy_files import (
    STRIMZI_API,
    Resource,
    WorkerApp,
    k8s_containers,
    k8s_kafka_topics,
    k8s_mounts,
    manifests,
    mount_of,
    resources,
    settings_of,
    the_resource,
    workers,
)


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
