"""One frozen Settings object, read from the environment once at start-up."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.future import DEFAULT_FUTURE_SKEW, FutureLimit

__all__ = [
    "MIN_SECRET_CHARS",
    "PROJECT_ROOT",
    "SASL_PROTOCOLS",
    "SSL_PROTOCOLS",
    "WILDCARD_HOSTS",
    "WORKER_STORES",
    "Settings",
    "default_state_dir",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The checkout Gemba runs from (it holds deploy/ and the default policy)."""


MIN_SECRET_CHARS = 16
"""Shortest pseudonymisation key or ingest token accepted: shorter ones can be guessed."""
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Bind addresses meaning every interface."""
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


WORKER_STORES = frozenset({"rocksdb://", "memory://"})
"""Faust table stores the worker runs with (GEMBA_WORKER_STORE)."""

FOREVER_S = timedelta.max.total_seconds()
"""A longer allowance for future-dated events is no limit (and no timedelta holds it)."""


def default_state_dir() -> Path:
    """Where the local broker, its data and the worker's state live by default."""
    return PROJECT_ROOT / ".gemba"


class Settings(BaseSettings):
    """Everything configurable, from GEMBA_* variables (and KAFKA_BOOTSTRAP_SERVERS)."""

    # Errors name the setting and the reason, never the value: it may be a secret.
    model_config = SettingsConfigDict(
        env_prefix="GEMBA_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "GEMBA_KAFKA_BOOTSTRAP_SERVERS"),
        description="An existing cluster; when unset Gemba uses its own local broker.",
    )
    state_dir: Path = Field(default_factory=default_state_dir)
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(default=9092, ge=1, le=65535)
    broker_controller_port: int = Field(default=0, ge=0, le=65535)
    broker_dir: Path | None = Field(default=None, description="Broker data; state_dir/broker.")
    broker_heap_mb: int = Field(default=512, ge=128)
    broker_start_timeout_s: float = Field(default=120.0, gt=0)
    kafka_version: str = "4.4.0"
    kafka_pom: Path = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"

    touches_topic: str = "touches"
    dead_letter_topic: str = "touches-dlq"
    value_streams_topic: str = "deal-value-streams"
    alerts_topic: str = "deal-alerts"
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Copies of each partition of every topic Gemba or its worker creates: 1 "
        "for a single broker, 3 for a cluster (whose brokers say min.insync.replicas=2), so "
        "that one broker can be down without losing an acknowledged event or stopping work.",
    )

    app_id: str = Field(default="gemba", description="Faust app id: consumer group and tables.")
    worker_web_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Where the worker's web server (health, ready, metrics, pages) listens: "
        "loopback only by default; 0.0.0.0 (or ::) for every interface, e.g. in a container.",
    )
    worker_web_port: int = Field(default=6066, ge=1, le=65535)
    allowed_hosts: str = Field(
        default="",
        description="Host names (comma-separated) the worker's web server and the dashboard "
        "answer to besides the loopback ones and their own: the name a proxy, a probe or "
        "Prometheus uses (streams/host_check.py).",
    )
    dashboard_port: int = Field(default=6070, ge=1, le=65535, description="`gemba serve`.")
    worker_store: str = Field(
        default="rocksdb://",
        description="Faust table store: 'rocksdb://' (RocksDB through rocksdict, under "
        "worker_dir/tables, kept across restarts, so a restart reads only the changelog "
        "records written since the worker's last one) or 'memory://' (tables rebuilt from "
        "their changelogs at every start: for tests, and for throw-away workers).",
    )
    worker_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The worker's event loop: uvloop (faster I/O), or asyncio's own.",
    )
    recovery_stall_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="A worker whose table recovery reads nothing new for this long stops, "
        "non-zero, naming the stuck changelog partitions (streams/worker/liveness.py).",
    )
    policy_file: Path | None = Field(default=None, description="Policy TOML; default shipped.")

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    alert_clock: Literal["event", "live"] = Field(
        default="live",
        description="Stall alerts: 'live' measures a deal's silence to the wall clock (or to "
        "its partition's latest event, if dated ahead of it, by at most max_future_skew_s) "
        "once the partition is read to its end, to event time while a backlog is read; "
        "'event' to event time only (replays give the same alerts).",
    )
    alert_tick_s: float = Field(default=0.2, gt=0, description="Live alert clock's tick.")
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="POST each alert here (Slack-compatible); unset: no delivery. A secret: "
        "whoever holds a Slack webhook URL can post to the channel, so it is never shown.",
    )
    alert_webhook_timeout_s: float = Field(default=10.0, gt=0)
    alert_webhook_retry_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    alert_webhook_retry_max_s: float = Field(default=60.0, gt=0, description="Longest delay.")

    # Kafka security: TLS and SASL for every client (streams/kafka/clients.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle to verify the brokers; unset: the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="The certificate's key.")

    # The HTTP door for CRM webhooks (streams/ingest.py).
    ingest_port: int = Field(default=6068, ge=1, le=65535)
    ingest_token: SecretStr | None = Field(
        default=None, description="Bearer token every POST /events must carry."
    )
    ingest_max_body_bytes: int = Field(
        default=1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024, description="Largest request body."
    )
    ingest_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection whose request line and headers have not all come this many "
        "seconds after it opened (or after its previous answer) is closed: a trickling client "
        "holds no slot for long.",
    )
    ingest_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A body not received whole this many seconds after its headers: 408.",
    )

    max_future_skew_s: float = Field(
        default=DEFAULT_FUTURE_SKEW.total_seconds(),
        ge=0,
        description="Events dated more than this many seconds after they were recorded (the "
        "Kafka record's time in the worker, the wall clock at the door) are refused as "
        "future-dated; 'inf': no limit (a simulation running ahead of the clock).",
    )

    pseudonymise_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 that replaces contact ids before they are published; "
        "unset: contact ids are stored as given.",
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("worker_store")
    @classmethod
    def _known_store(cls, url: str) -> str:
        scheme, separator, _ = url.partition("://")
        if not separator or f"{scheme.lower()}://" not in WORKER_STORES:
            raise ValueError(
                f"must be a Faust store URL starting {' or '.join(sorted(WORKER_STORES))}, "
                "e.g. rocksdb:// (kept on disk) or memory:// (rebuilt at every start)"
            )
        return url

    @field_validator("pseudonymise_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(
                f"must be at least {MIN_SECRET_CHARS} characters; make one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return key

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl = self.kafka_sasl_username is not None or self.kafka_sasl_password is not None
        if protocol in SASL_PROTOCOLS and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"GEMBA_KAFKA_SECURITY_PROTOCOL={protocol} needs GEMBA_KAFKA_SASL_USERNAME "
                "and GEMBA_KAFKA_SASL_PASSWORD"
            )
        if sasl and protocol not in SASL_PROTOCOLS:
            raise ValueError(
                "GEMBA_KAFKA_SASL_USERNAME/PASSWORD are set but not used: set "
                "GEMBA_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if any(files) and protocol not in SSL_PROTOCOLS:
            raise ValueError(
                "GEMBA_KAFKA_SSL_* files are set but not used: set "
                "GEMBA_KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL)"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("GEMBA_KAFKA_SSL_KEYFILE needs GEMBA_KAFKA_SSL_CERTFILE")
        return self

    @field_validator("broker_host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("the local broker listens on loopback only (127.0.0.1)")
        return host

    @property
    def future_limit(self) -> FutureLimit | None:
        """The allowance for future-dated events; None when there is no limit."""
        if math.isinf(self.max_future_skew_s) or self.max_future_skew_s > FOREVER_S:
            return None
        return FutureLimit(timedelta(seconds=self.max_future_skew_s))

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """GEMBA_ALLOWED_HOSTS as a set of names."""
        return frozenset(n.strip() for n in self.allowed_hosts.split(",") if n.strip())

    @property
    def worker_web_url(self) -> str:
        """Where a client on this machine reaches the worker's pages (loopback when it listens
        on every interface)."""
        host = self.worker_web_host
        host = "127.0.0.1" if host in WILDCARD_HOSTS else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.worker_web_port}"

    @property
    def touches_by_account_topic(self) -> str:
        """The worker's internal copy of deal and campaign-response events, keyed by account."""
        return f"{self.touches_topic}-by-account"

    @property
    def local_broker(self) -> bool:
        """True when Gemba runs its own broker rather than using KAFKA_BOOTSTRAP_SERVERS."""
        return not self.kafka_bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect."""
        return self.kafka_bootstrap_servers or f"{self.broker_host}:{self.broker_port}"

    @property
    def controller_port(self) -> int:
        """The KRaft controller's port: set, or the broker port plus one."""
        return self.broker_controller_port or self.broker_port + 1

    @property
    def broker_data_dir(self) -> Path:
        """Directory holding the local broker's log, pid file and data."""
        return self.broker_dir or self.state_dir / "broker"

    @property
    def worker_dir(self) -> Path:
        """The Faust worker's data directory."""
        return self.state_dir / "worker"

    @property
    def kafka_libs_dir(self) -> Path:
        """Cache of the broker's jars, resolved by Maven once per Kafka version."""
        return self.state_dir / "kafka" / self.kafka_version / "libs"

    # The history archive (streams/worker/sink.py, projections/archive/, docs/history.md).
    duckdb_path: Path | None = Field(
        default=None, description="The history archive (DuckDB file); state_dir/gemba.duckdb."
    )
    history_sink: bool = Field(
        default=True,
        description="The worker archives every event, dead letter and alert into DuckDB; "
        "exactly one process may write the file.",
    )
    duckdb_busy_timeout_s: float = Field(
        default=30.0, gt=0, description="How long readers wait while the sink holds the file."
    )

    @property
    def history_db_path(self) -> Path:
        """The history archive's DuckDB file."""
        return self.duckdb_path or self.state_dir / "gemba.duckdb"
