"""A second local broker for tests that only lets in clients speaking TLS and SASL.

Its one client listener is SASL_SSL on 127.0.0.1, with a certificate for 127.0.0.1 and
localhost issued by a throwaway CA; it knows one user under each SASL mechanism Gemba
offers (SCRAM users stored as the storage is formatted, the PLAIN one in its JAAS
line). The controller and the broker's own inter-broker traffic stay on listeners of
their own, also on 127.0.0.1, that no client is told about.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from streams.kafka.broker import start_broker, stop_broker
from streams.settings import Settings
from tests.support.worker_harness import WorkerSetup, free_port

__all__ = [
    "Certificates",
    "Mechanism",
    "SecureBroker",
    "SecureWorkerSetup",
    "make_certificates",
    "running_secure_broker",
    "security_env",
]

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
MECHANISMS: tuple[Mechanism, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
USER = "gemba"
HOST = "127.0.0.1"
LISTENER = "sasl_ssl"
"""The client listener's name, as Kafka's per-listener properties spell it."""


@dataclass(frozen=True)
class Certificates:
    """The CA the clients trust, and the broker's key and certificate chain it signed."""

    ca: Path
    """PEM: GEMBA_KAFKA_SSL_CAFILE."""
    keystore: Path
    """PKCS12: the broker's key, its certificate and the CA's."""
    keystore_password: str


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_certificates(where: Path) -> Certificates:
    """A CA for this run and a broker certificate for 127.0.0.1 and localhost (P-256 keys,
    valid for a day): a fraction of a second."""
    where.mkdir(parents=True, exist_ok=True)
    ca, ca_key = where / "ca.pem", where / "ca-key.pem"
    cert, key = where / "broker.pem", where / "broker-key.pem"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
    _openssl("req", "-x509", *new_key, "-subj", "/CN=Gemba test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _openssl("req", "-x509", *new_key, "-CA", str(ca), "-CAkey", str(ca_key),
             "-subj", "/CN=localhost",
             "-addext", f"subjectAltName=IP:{HOST},DNS:localhost",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    password = secrets.token_hex(16)
    keystore = where / "broker.p12"
    _openssl("pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca),
             "-name", "broker", "-out", str(keystore), "-passout", f"pass:{password}")  # fmt: skip
    return Certificates(ca=ca, keystore=keystore, keystore_password=password)


@dataclass(frozen=True)
class SecureBroker:
    """A running broker with one SASL_SSL listener, and the password of each of its users."""

    broker: Settings
    """The settings it was started with (its ports and data directory)."""
    certificates: Certificates
    passwords: dict[Mechanism, str]

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.broker.broker_port}"

    def client(
        self,
        mechanism: Mechanism = "SCRAM-SHA-512",
        *,
        password: str | None = None,
        protocol: Literal["SASL_SSL", "SASL_PLAINTEXT"] = "SASL_SSL",
    ) -> Settings:
        """A client's settings: SASL_SSL as `mechanism`'s user, unless told otherwise."""
        return Settings(
            kafka_bootstrap_servers=self.bootstrap_servers,
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username=USER,
            kafka_sasl_password=SecretStr(password or self.passwords[mechanism]),
            kafka_ssl_cafile=self.certificates.ca if protocol == "SASL_SSL" else None,
        )


def _listener_properties(
    broker: Settings, certificates: Certificates, plain_password: str
) -> dict[str, str]:
    """server.properties entries: SASL_SSL for clients, PLAINTEXT between the broker and
    itself and to its controller, every listener on 127.0.0.1."""
    port, internal, ctl = broker.broker_port, free_port(), broker.controller_port
    prefix = f"listener.name.{LISTENER}"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{USER}="{plain_password}";'
    )
    return {
        "listeners": f"SASL_SSL://{HOST}:{port},INTERNAL://{HOST}:{internal},"
        f"CONTROLLER://{HOST}:{ctl}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port},INTERNAL://{HOST}:{internal}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,"
        "CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        f"{prefix}.sasl.enabled.mechanisms": ",".join(MECHANISMS),
        f"{prefix}.scram-sha-512.sasl.jaas.config": scram,
        f"{prefix}.scram-sha-256.sasl.jaas.config": scram,
        f"{prefix}.plain.sasl.jaas.config": plain,
        f"{prefix}.ssl.keystore.type": "PKCS12",
        f"{prefix}.ssl.keystore.location": str(certificates.keystore),
        f"{prefix}.ssl.keystore.password": certificates.keystore_password,
    }


@contextlib.contextmanager
def running_secure_broker(where: Path) -> Iterator[SecureBroker]:
    """Certificates, users and a broker in `where`; the broker is stopped when the block
    ends, however it ends."""
    certificates = make_certificates(where / "tls")
    passwords: dict[Mechanism, str] = {m: secrets.token_urlsafe(18) for m in MECHANISMS}
    broker = Settings(
        kafka_bootstrap_servers=None,
        broker_port=free_port(),
        broker_controller_port=free_port(),
        broker_dir=where / "broker",
        broker_heap_mb=256,
    )
    scram = [
        f"{m}=[name={USER},password={passwords[m]}]" for m in MECHANISMS if m.startswith("SCRAM")
    ]
    try:
        start_broker(
            broker,
            say=lambda _: None,
            properties=_listener_properties(broker, certificates, passwords["PLAIN"]),
            scram_credentials=scram,
        )
        yield SecureBroker(broker, certificates, passwords)
    finally:
        stop_broker(broker)


def security_env(settings: Settings) -> dict[str, str]:
    """The GEMBA_KAFKA_* variables that give a `gemba` process these security settings."""
    env: dict[str, str] = {
        "GEMBA_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "GEMBA_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
    }
    if settings.kafka_sasl_username is not None:
        env["GEMBA_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        env["GEMBA_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile is not None:
        env["GEMBA_KAFKA_SSL_CAFILE"] = str(settings.kafka_ssl_cafile)
    return env


@dataclass(frozen=True)
class SecureWorkerSetup(WorkerSetup):
    """A worker setup whose `gemba worker` also gets the clients' security settings."""

    security: dict[str, str] = field(default_factory=dict)

    @classmethod
    def secured(cls, client: Settings, state_dir: Path) -> SecureWorkerSetup:
        """A setup nobody else uses, on `client`'s cluster, as `client` connects."""
        return cls(client.bootstrap_servers, state_dir, security=security_env(client))

    def env(self) -> dict[str, str]:
        return super().env() | self.security
