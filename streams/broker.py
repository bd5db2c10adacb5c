"""A single-node Apache Kafka broker (KRaft) from Maven Central, run on 127.0.0.1."""

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
    "BrokerError",
    "BrokerStatus",
    "broker_status",
    "ensure_kafka_libs",
    "start_broker",
    "stop_broker",
]

LOG4J_CONFIG = PROJECT_ROOT / "deploy" / "kafka" / "log4j2.properties"
MIN_JAVA = 17
Say = Callable[[str], None]


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


def _format_storage(
    java: str, libs: Path, properties: Path, data: Path, scram_credentials: Sequence[str] = ()
) -> None:
    if (data / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    # One id in 64 starts with "-", which the storage tool reads as an option; Kafka's own
    # ids never do. Any base64url character is valid there, so take another first one.
    if cluster_id.startswith("-"):
        cluster_id = "A" + cluster_id[1:]
    command = [java, "-cp", _classpath(libs), "kafka.tools.StorageTool", "format",
               "-t", cluster_id, "-c", str(properties), "--ignore-formatted"]  # fmt: skip
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
    for port in (settings.broker_port, settings.controller_port):
        if _port_open(settings.broker_host, port):
            raise BrokerError(
                f"port {port} on {settings.broker_host} is already in use by another program. "
                "Stop it, choose another port (GEMBA_BROKER_PORT), or point Gemba at that "
                "broker with KAFKA_BOOTSTRAP_SERVERS."
            )
    java = _java()
    libs = ensure_kafka_libs(settings, say)
    home = settings.broker_data_dir
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(_server_properties(settings, data, properties))
    _format_storage(java, libs, config, data, scram_credentials)
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
