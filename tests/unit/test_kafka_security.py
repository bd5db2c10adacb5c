"""TLS and SASL settings reach every Kafka client, and secrets are never shown."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from pydantic import ValidationError

from streams.kafka.clients import (
    KafkaSecurityError,
    faust_broker_credentials,
    kafka_client_options,
    ssl_context,
)
from streams.settings import Settings

PASSWORD = "correct-horse-battery-staple-7391"


def sasl(protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512", **extra: Any) -> Settings:
    return Settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="gemba-worker",
        kafka_sasl_password=PASSWORD,
        **extra,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA certificate and a client certificate with its key (PEM files)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    files = {name: where / f"{name}.pem" for name in ("ca", "ca-key", "client", "client-key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", str(files["ca-key"]), "-out", str(files["ca"]))  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=gemba",
            "-keyout", str(files["client-key"]), "-out", str(files["client"]))  # fmt: skip
    return files


def test_plaintext_adds_no_client_options_and_no_faust_credentials() -> None:
    settings = Settings()

    assert kafka_client_options(settings) == {}
    assert faust_broker_credentials(settings) is None


def test_sasl_over_tls_gives_kafka_python_the_protocol_mechanism_and_login() -> None:
    options = kafka_client_options(sasl(kafka_ssl_cafile=Path("/etc/kafka/ca.pem")))

    assert options == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": "/etc/kafka/ca.pem",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gemba-worker",
        "sasl_plain_password": PASSWORD,
    }


def test_mutual_tls_gives_kafka_python_the_ca_certificate_and_key_files() -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=Path("ca.pem"),
        kafka_ssl_certfile=Path("client.pem"),
        kafka_ssl_keyfile=Path("client-key.pem"),
    )

    assert kafka_client_options(settings) == {
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": "ca.pem",
        "ssl_certfile": "client.pem",
        "ssl_keyfile": "client-key.pem",
    }


@pytest.mark.parametrize("client", [KafkaProducer, KafkaConsumer, KafkaAdminClient])
def test_every_option_is_one_each_kafka_python_client_knows(client: Any) -> None:
    settings = sasl(
        kafka_ssl_cafile=Path("ca.pem"),
        kafka_ssl_certfile=Path("c.pem"),
        kafka_ssl_keyfile=Path("k.pem"),
    )

    assert set(kafka_client_options(settings)) <= set(client.DEFAULT_CONFIG)


def test_sasl_without_tls_gives_faust_sasl_credentials_and_no_tls_context() -> None:
    credentials = faust_broker_credentials(sasl("SASL_PLAINTEXT", "SCRAM-SHA-256"))

    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_256
    assert (credentials.username, credentials.password) == ("gemba-worker", PASSWORD)
    assert credentials.ssl_context is None
    assert PASSWORD not in repr(credentials)


def test_sasl_over_tls_reaches_aiokafka_with_a_verifying_tls_context(
    certificates: dict[str, Path],
) -> None:
    settings = sasl(kafka_ssl_cafile=certificates["ca"])

    auth = credentials_to_aiokafka_auth(faust_broker_credentials(settings))

    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
        "gemba-worker",
        PASSWORD,
    )
    context = auth["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert any(
        cert["subject"] == ((("commonName", "test-ca"),),) for cert in context.get_ca_certs()
    )


def test_mutual_tls_gives_faust_an_ssl_context_with_the_client_certificate(
    certificates: dict[str, Path],
) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certificates["ca"],
        kafka_ssl_certfile=certificates["client"],
        kafka_ssl_keyfile=certificates["client-key"],
    )

    credentials = faust_broker_credentials(settings)
    auth = credentials_to_aiokafka_auth(credentials)

    assert isinstance(credentials, SSLCredentials)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].verify_mode is ssl.CERT_REQUIRED


def test_a_missing_ca_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nope.pem")

    with pytest.raises(KafkaSecurityError, match="GEMBA_KAFKA_SSL_CAFILE"):
        ssl_context(settings)


def test_a_certificate_without_its_key_is_refused_naming_the_setting(
    certificates: dict[str, Path],
) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=certificates["client"])

    with pytest.raises(KafkaSecurityError, match="GEMBA_KAFKA_SSL_CERTFILE"):
        ssl_context(settings)


def test_protocol_and_mechanism_are_read_in_any_case() -> None:
    settings = sasl("sasl_plaintext", "scram-sha-256")

    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-256"


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "GEMBA_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": PASSWORD}, "SASL_SSL"),
        ({"kafka_ssl_cafile": "ca.pem"}, "GEMBA_KAFKA_SECURITY_PROTOCOL=SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "k.pem"}, "SSL_CERTFILE"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"pseudonymise_key": "too-short"}, "at least 16 characters"),
    ],
)
def test_incomplete_or_unused_security_settings_are_refused_with_what_to_set(
    settings: dict[str, str], names: str
) -> None:
    with pytest.raises(ValidationError, match=names) as refused:
        Settings(**settings)  # type: ignore[arg-type]

    assert PASSWORD not in str(refused.value)
    assert "too-short" not in str(refused.value)


def test_secrets_never_show_in_the_settings_repr_str_or_dump() -> None:
    settings = sasl(
        ingest_token="ingest-token-0123456789", pseudonymise_key="pseudo-key-0123456789"
    )

    shown = repr(settings) + str(settings) + settings.model_dump_json()

    for secret in (PASSWORD, "ingest-token-0123456789", "pseudo-key-0123456789"):
        assert secret not in shown
    assert "gemba-worker" in shown  # the user name is not a secret
