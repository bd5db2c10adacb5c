"""The local broker explains what is missing instead of failing with a stack trace."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.kafka.broker import (
    CLUSTER_BROKER_CONFIG,
    BrokerError,
    ClusterNode,
    LocalCluster,
    broker_status,
    ensure_kafka_libs,
    start_broker,
    start_cluster,
    stop_broker,
)
from streams.settings import Settings
from tests.support.worker_harness import free_port


@pytest.fixture
def isolated(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, broker_port=1, kafka_bootstrap_servers=None)


def test_missing_java_names_what_to_install(
    isolated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerError, match=r"Java 17 or newer .* apt install openjdk-17"):
        start_broker(isolated)


def test_missing_maven_names_what_to_install(
    isolated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerError, match=r"Maven \(mvn\) .* apt install maven"):
        ensure_kafka_libs(isolated)


def test_a_port_taken_by_another_program_is_reported_with_alternatives(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(state_dir=tmp_path, broker_port=port, kafka_bootstrap_servers=None)
        with pytest.raises(BrokerError, match=rf"port {port} .*GEMBA_BROKER_PORT"):
            start_broker(settings)


def test_an_external_cluster_means_no_local_broker(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap_servers="kafka.example:9092")
    with pytest.raises(BrokerError, match="KAFKA_BOOTSTRAP_SERVERS is set"):
        start_broker(settings)


def test_status_and_stop_are_calm_when_nothing_runs(isolated: Settings) -> None:
    status = broker_status(isolated)
    assert not status.running
    assert "no local broker running" in status.describe()
    assert stop_broker(isolated) is False


def test_a_stale_pid_file_is_not_mistaken_for_a_running_broker(isolated: Settings) -> None:
    isolated.broker_data_dir.mkdir(parents=True)
    (isolated.broker_data_dir / "broker.pid").write_text("1")  # pid 1 is not Kafka
    assert not broker_status(isolated).running


def test_the_broker_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        Settings(broker_host="0.0.0.0")


def test_a_cluster_has_at_least_three_nodes_for_replication_three(isolated: Settings) -> None:
    with pytest.raises(BrokerError, match=r"at least 3 nodes, for replication 3 .*broker start"):
        start_cluster(isolated, nodes=2)


def test_a_cluster_refuses_a_taken_port_before_starting_any_node(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(state_dir=tmp_path, kafka_bootstrap_servers=None)
        found: set[int] = set()
        while len(found) < 5:
            found.add(free_port())
        free = sorted(found)
        ports = [(free[0], free[1]), (free[2], free[3]), (free[4], port)]
        with pytest.raises(BrokerError, match=rf"port {port} .*already in use"):
            start_cluster(settings, ports=ports)
    assert not list(tmp_path.rglob("*.pid")), "no node should have started"


def test_a_cluster_needs_distinct_ports_for_every_node(isolated: Settings) -> None:
    with pytest.raises(BrokerError, match="3 pairs of distinct ports"):
        start_cluster(isolated, ports=[(20_000, 20_001), (20_002, 20_003), (20_000, 20_005)])


def test_every_cluster_node_is_a_voter_of_one_quorum_replicating_three_times(
    tmp_path: Path,
) -> None:
    base = Settings(state_dir=tmp_path, kafka_bootstrap_servers=None)
    nodes = tuple(
        ClusterNode(k, base.model_copy(update={"broker_port": 9090 + 2 * k,
                                              "broker_controller_port": 9091 + 2 * k}))
        for k in (1, 2, 3)
    )  # fmt: skip
    cluster = LocalCluster("cluster-id", nodes, base)

    for node in nodes:
        properties = cluster.properties(node)
        assert properties["node.id"] == str(node.node_id)
        assert properties["controller.quorum.voters"] == (
            "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
        )
        assert CLUSTER_BROKER_CONFIG.items() <= properties.items()
    assert cluster.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
