"""Apache Kafka (KRaft) from Maven Central, run on 127.0.0.1: one broker, or a cluster of
three or more nodes with replication 3 and min.insync.replicas 2 (docs/scale-out.md)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.errors import GembaError
from streams.settings import PROJECT_ROOT, Settings

__all__ = [
    "CLUSTER_BROKER_CONFIG",
    "CLUSTER_MIN_INSYNC_REPLICAS",
    "CLUSTER_REPLICATION_FACTOR",
    "BrokerError",
    "BrokerStatus",
    "ClusterNode",
    "LocalCluster",
    "broker_status",
    "ensure_kafka_libs",
    "kill_node",
    "start_broker",
    "start_cluster",
    "start_node",
    "stop_broker",
    "stop_cluster",
]

LOG4J_CONFIG = PROJECT_ROOT / "deploy" / "kafka" / "log4j2.properties"
MIN_JAVA = 17
Say = Callable[[str], None]

CLUSTER_REPLICATION_FACTOR = 3
"""Copies of every partition in a cluster: the local one here, and the one deploy/k8s runs."""
CLUSTER_MIN_INSYNC_REPLICAS = 2
"""Copies an acks=all write must reach before it is acknowledged: with three, one node can
be down (killed, rolled, lost) and every event acknowledged is still on two disks."""
CLUSTER_BROKER_CONFIG: Mapping[str, str] = {
    "default.replication.factor": str(CLUSTER_REPLICATION_FACTOR),
    "min.insync.replicas": str(CLUSTER_MIN_INSYNC_REPLICAS),
    "offsets.topic.replication.factor": str(CLUSTER_REPLICATION_FACTOR),
    "transaction.state.log.replication.factor": str(CLUSTER_REPLICATION_FACTOR),
    "transaction.state.log.min.isr": str(CLUSTER_MIN_INSYNC_REPLICAS),
    "share.coordinator.state.topic.replication.factor": str(CLUSTER_REPLICATION_FACTOR),
    "share.coordinator.state.topic.min.isr": str(CLUSTER_MIN_INSYNC_REPLICAS),
}
"""The replication every node of a cluster is configured with (Gemba's topics follow
GEMBA_TOPIC_REPLICATION_FACTOR, which a cluster's clients set to 3)."""


class BrokerError(GembaError):
    """The local broker could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """Whether the local broker runs, and where."""

    running: bool
    bootstrap_servers: str
    pid: int | None
    data_dir: Path
    log_file: Path
    kafka_version: str

    def describe(self) -> str:
        """One line for a person."""
        if self.running:
            return (
                f"Kafka {self.kafka_version} broker running at {self.bootstrap_servers} "
                f"(pid {self.pid}), data in {self.data_dir}, log {self.log_file}"
            )
        return f"no local broker running (would listen on {self.bootstrap_servers})"


def _pid_file(settings: Settings) -> Path:
    return settings.broker_data_dir / "broker.pid"


def _log_file(settings: Settings) -> Path:
    return settings.broker_data_dir / "broker.log"


def _running_pid(settings: Settings) -> int | None:
    """The pid of our broker if it is alive (and really a Kafka JVM), else None."""
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    if state == "Z":
        return None
    # The JVM's command line reads empty for a moment while it starts.
    return pid if not cmdline or b"kafka.Kafka" in cmdline else None


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def broker_status(settings: Settings) -> BrokerStatus:
    """Report on the local broker without changing anything."""
    pid = _running_pid(settings)
    return BrokerStatus(
        running=pid is not None,
        bootstrap_servers=settings.bootstrap_servers,
        pid=pid,
        data_dir=settings.broker_data_dir,
        log_file=_log_file(settings),
        kafka_version=settings.kafka_version,
    )


def _java() -> str:
    """The java executable (JAVA_HOME first), checked to be version 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError(
            "Java 17 or newer is needed to run the local Kafka broker and was not found. "
            "Install it (Debian/Ubuntu: sudo apt install openjdk-17-jre-headless) or set "
            "JAVA_HOME; "
            "or use Docker (docker compose -f deploy/docker-compose.yml up -d) "
            "or an existing cluster (KAFKA_BOOTSTRAP_SERVERS)."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match and int(match.group(1)) < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {match.group(1)}; Kafka needs Java {MIN_JAVA} or newer. "
            "Install a newer JDK and set JAVA_HOME to it."
        )
    return java


def ensure_kafka_libs(settings: Settings, say: Say = print) -> Path:
    """Resolve the broker's jars with Maven once per Kafka version; return their folder."""
    libs = settings.kafka_libs_dir
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (mvn) is needed once to fetch Apache Kafka from Maven Central and was not "
            "found. Install it (Debian/Ubuntu: sudo apt install maven); or use Docker "
            "(docker compose -f deploy/docker-compose.yml up -d) or an existing cluster "
            "(KAFKA_BOOTSTRAP_SERVERS)."
        )
    if not settings.kafka_pom.exists():
        raise BrokerError(
            f"{settings.kafka_pom} is missing; set GEMBA_KAFKA_POM to deploy/kafka/pom.xml"
        )
    say(f"Fetching Apache Kafka {settings.kafka_version} from Maven Central (first run only)...")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    command = [
        mvn, "-B", "-q", "-f", str(settings.kafka_pom), "dependency:copy-dependencies",
        f"-Dkafka.version={settings.kafka_version}", f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(
            f"Maven could not fetch Kafka {settings.kafka_version} (exit {result.returncode}). "
            f"Check network access to Maven Central and the version (GEMBA_KAFKA_VERSION).\n{tail}"
        )
    done.write_text(settings.kafka_version)
    return libs


def _server_properties(
    settings: Settings, data: Path, overrides: Mapping[str, str] | None = None
) -> str:
    host, port, ctl = settings.broker_host, settings.broker_port, settings.controller_port
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{ctl}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    } | dict(overrides or {})
    lines = [f"{name}={value}" for name, value in properties.items()]
    return "\n".join(
        ["# Written by `gemba broker start`; edit GEMBA_* settings instead.", *lines, ""]
    )


def _classpath(libs: Path) -> str:
    return f"{libs}/*"


def _new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes, as Kafka's own)."""
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    # One id in 64 starts with "-", which the storage tool reads as an option; Kafka's own
    # ids never do. Any base64url character is valid there, so take another first one.
    return "A" + cluster_id[1:] if cluster_id.startswith("-") else cluster_id


def _format_storage(
    java: str,
    libs: Path,
    properties: Path,
    data: Path,
    scram_credentials: Sequence[str] = (),
    cluster_id: str | None = None,
) -> None:
    if (data / "meta.properties").exists():
        return
    command = [java, "-cp", _classpath(libs), "kafka.tools.StorageTool", "format",
               "-t", cluster_id or _new_cluster_id(), "-c", str(properties),
               "--ignore-formatted"]  # fmt: skip
    for credential in scram_credentials:
        command += ["--add-scram", credential]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"formatting the broker's storage failed:\n{result.stderr[-2000:]}")


def _wait_until_ready(
    settings: Settings, process: subprocess.Popen[bytes], deadline: float
) -> None:
    log = _log_file(settings)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise BrokerError(f"the broker exited during start-up; last lines of {log}:\n{tail}")
        if _port_open(settings.broker_host, settings.broker_port) and "Kafka Server started" in (
            log.read_text(errors="replace")
        ):
            return
        time.sleep(0.25)
    raise BrokerError(
        f"the broker did not become ready within {settings.broker_start_timeout_s:.0f}s; "
        f"see {log} (raise GEMBA_BROKER_START_TIMEOUT_S on a slow machine)"
    )


def _refuse_taken_ports(settings: Settings) -> None:
    for port in (settings.broker_port, settings.controller_port):
        if _port_open(settings.broker_host, port):
            raise BrokerError(
                f"port {port} on {settings.broker_host} is already in use by another program. "
                "Stop it, choose another port (GEMBA_BROKER_PORT), or point Gemba at that "
                "broker with KAFKA_BOOTSTRAP_SERVERS."
            )


def _launch(
    settings: Settings,
    say: Say,
    properties: Mapping[str, str] | None,
    scram_credentials: Sequence[str] = (),
    cluster_id: str | None = None,
) -> subprocess.Popen[bytes]:
    """Write server.properties, format the storage the first time, start the JVM."""
    java = _java()
    libs = ensure_kafka_libs(settings, say)
    home = settings.broker_data_dir
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(_server_properties(settings, data, properties))
    _format_storage(java, libs, config, data, scram_credentials, cluster_id)
    command = [
        java, f"-Xmx{settings.broker_heap_mb}m", f"-Xms{min(settings.broker_heap_mb, 256)}m",
        "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", _classpath(libs), "kafka.Kafka", str(config),
    ]  # fmt: skip
    with _log_file(settings).open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=home,
        )  # fmt: skip
    _pid_file(settings).write_text(str(process.pid))
    return process


def start_broker(
    settings: Settings,
    say: Say = print,
    *,
    properties: Mapping[str, str] | None = None,
    scram_credentials: Sequence[str] = (),
) -> BrokerStatus:
    """Start the local broker, or reuse the one already running; wait until it serves.

    `properties` add to or replace entries of its server.properties (listeners with TLS
    and SASL, say); `scram_credentials` are SCRAM users stored as the storage is formatted,
    each as the storage tool's --add-scram takes it: 'SCRAM-SHA-512=[name=...,password=...]'.
    """
    if not settings.local_broker:
        raise BrokerError(
            f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): Gemba uses that "
            "cluster and starts no local broker. Unset it to run one here."
        )
    current = broker_status(settings)
    if current.running:
        return current
    _refuse_taken_ports(settings)
    process = _launch(settings, say, properties, scram_credentials)
    try:
        _wait_until_ready(settings, process, time.monotonic() + settings.broker_start_timeout_s)
    except BrokerError:
        stop_broker(settings)
        raise
    return broker_status(settings)


def stop_broker(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Stop the local broker cleanly (SIGTERM, then SIGKILL); False if none was running."""
    pid = _running_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _running_pid(settings) == pid:
        time.sleep(0.2)
    if _running_pid(settings) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    _pid_file(settings).unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class ClusterNode:
    """One node of a local cluster: a KRaft controller and a broker in one JVM."""

    node_id: int
    settings: Settings
    """This node's own ports and data directory (broker_port, controller_port, broker_dir)."""

    @property
    def address(self) -> str:
        """Where clients reach this node's broker."""
        return f"{self.settings.broker_host}:{self.settings.broker_port}"

    @property
    def voter(self) -> str:
        """This node as an entry of controller.quorum.voters."""
        return f"{self.node_id}@{self.settings.broker_host}:{self.settings.controller_port}"

    @property
    def pid(self) -> int | None:
        """The node's JVM while it runs, else None."""
        return _running_pid(self.settings)


@dataclass(frozen=True)
class LocalCluster:
    """Nodes started by `start_cluster`: one cluster id, every node a voter of the quorum."""

    cluster_id: str
    nodes: tuple[ClusterNode, ...]
    settings: Settings
    """Settings for the cluster's clients: its bootstrap servers, topics replicated 3 times."""

    @property
    def bootstrap_servers(self) -> str:
        """Every node's broker, as clients list them (any one answering is enough)."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        """The node with this KRaft node id."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        known = [node.node_id for node in self.nodes]
        raise BrokerError(f"the cluster has no node {node_id}; its nodes are {known}")

    def properties(self, node: ClusterNode) -> dict[str, str]:
        """What a node's server.properties says beyond a single broker's."""
        voters = ",".join(member.voter for member in self.nodes)
        identity = {"node.id": str(node.node_id), "controller.quorum.voters": voters}
        return identity | dict(CLUSTER_BROKER_CONFIG)


def _stored_cluster_id(data: Path) -> str | None:
    """The cluster id a node's storage was formatted with, if it was."""
    try:
        text = (data / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    found = re.search(r"^cluster\.id=(\S+)$", text, re.MULTILINE)
    return found.group(1) if found else None


def _cluster_layout(
    settings: Settings, nodes: int, ports: Sequence[tuple[int, int]] | None
) -> tuple[ClusterNode, ...]:
    """Node k (from 1): its (broker, controller) ports, given or counted up from
    GEMBA_BROKER_PORT two at a time, and its data in <broker dir>/node-k."""
    if nodes < CLUSTER_REPLICATION_FACTOR:
        raise BrokerError(
            f"a cluster needs at least {CLUSTER_REPLICATION_FACTOR} nodes, for replication "
            f"{CLUSTER_REPLICATION_FACTOR} (asked for {nodes}); for one broker use "
            "`gemba broker start`."
        )
    if ports is None:
        ports = [
            (settings.broker_port + 2 * k, settings.broker_port + 2 * k + 1) for k in range(nodes)
        ]
    if len(ports) != nodes or len({p for pair in ports for p in pair}) != 2 * nodes:
        raise BrokerError(f"a cluster of {nodes} nodes needs {nodes} pairs of distinct ports")
    return tuple(
        ClusterNode(
            node_id=k + 1,
            settings=settings.model_copy(
                update={
                    "broker_port": broker_port,
                    "broker_controller_port": controller_port,
                    "broker_dir": settings.broker_data_dir / f"node-{k + 1}",
                }
            ),
        )
        for k, (broker_port, controller_port) in enumerate(ports)
    )


def start_cluster(
    settings: Settings,
    nodes: int = CLUSTER_REPLICATION_FACTOR,
    say: Say = print,
    *,
    ports: Sequence[tuple[int, int]] | None = None,
) -> LocalCluster:
    """Start a KRaft cluster on 127.0.0.1 (nodes already running are reused); wait until
    every broker serves.

    Every node is a controller and a broker (as deploy/k8s/kafka.yaml's node pool), with
    replication 3 and min.insync.replicas 2 (CLUSTER_BROKER_CONFIG). `ports` are each
    node's (broker, controller) ports; by default GEMBA_BROKER_PORT and up, two per node.
    Each node has GEMBA_BROKER_HEAP_MB of heap. The returned cluster's `settings` are
    what its clients need (bootstrap servers, GEMBA_TOPIC_REPLICATION_FACTOR=3).
    """
    if not settings.local_broker:
        raise BrokerError(
            f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): Gemba uses that "
            "cluster and starts no local one. Unset it to run one here."
        )
    layout = _cluster_layout(settings, nodes, ports)
    stored = (_stored_cluster_id(node.settings.broker_data_dir / "data") for node in layout)
    cluster_id = next((found for found in stored if found), None) or _new_cluster_id()
    bootstrap = ",".join(node.address for node in layout)
    cluster = LocalCluster(
        cluster_id=cluster_id,
        nodes=layout,
        settings=settings.model_copy(
            update={
                "kafka_bootstrap_servers": bootstrap,
                "topic_replication_factor": CLUSTER_REPLICATION_FACTOR,
            }
        ),
    )
    waiting = [node for node in layout if node.pid is None]
    for node in waiting:
        _refuse_taken_ports(node.settings)
    # All at once: a node's broker serves only once the controllers have a quorum.
    launched = [
        (node, _launch(node.settings, say, cluster.properties(node), cluster_id=cluster_id))
        for node in waiting
    ]
    deadline = time.monotonic() + settings.broker_start_timeout_s
    try:
        for node, process in launched:
            _wait_until_ready(node.settings, process, deadline)
    except BrokerError:
        stop_cluster(cluster)
        raise
    return cluster


def kill_node(cluster: LocalCluster, node_id: int) -> int:
    """SIGKILL one node, as when its machine dies (no controlled shutdown); its pid."""
    node = cluster.node(node_id)
    pid = node.pid
    if pid is None:
        raise BrokerError(f"node {node_id} of the cluster is not running")
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # reaped here when this process started it
    _pid_file(node.settings).unlink(missing_ok=True)
    return pid


def start_node(cluster: LocalCluster, node_id: int, say: Say = print) -> BrokerStatus:
    """Start one node of the cluster again (on its own ports and data) and wait until its
    broker serves; the node then catches up and rejoins the in-sync replicas."""
    node = cluster.node(node_id)
    if node.pid is None:
        _refuse_taken_ports(node.settings)
        process = _launch(
            node.settings, say, cluster.properties(node), cluster_id=cluster.cluster_id
        )
        deadline = time.monotonic() + node.settings.broker_start_timeout_s
        _wait_until_ready(node.settings, process, deadline)
    return broker_status(node.settings)


def stop_cluster(cluster: LocalCluster, timeout_s: float = 30.0) -> None:
    """Stop every node: SIGTERM to all at once (a lone node's controlled shutdown would wait
    for a quorum that has gone), then SIGKILL what still runs at the deadline."""
    running = [(node, pid) for node in cluster.nodes if (pid := node.pid) is not None]
    for _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(node.pid == pid for node, pid in running):
        time.sleep(0.2)
    for node, pid in running:
        if node.pid == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        _pid_file(node.settings).unlink(missing_ok=True)
