"""Kafka clients built from settings: TLS and SASL for every one, pseudonyms at the door."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kafka.errors import InvalidReplicationFactorError

from events.errors import PublishError
from events.producer import LOG_TOPIC_CONFIG, KafkaEventPublisher, check_reachable, ensure_topic
from events.pseudonyms import Pseudonymiser
from streams.errors import GembaError
from streams.settings import SASL_PROTOCOLS, SSL_PROTOCOLS, Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

__all__ = [
    "KafkaSecurityError",
    "ensure_topic_for",
    "faust_broker_credentials",
    "kafka_client_options",
    "open_publisher",
    "pseudonymiser",
    "ssl_context",
]


class KafkaSecurityError(GembaError):
    """A TLS file named in the settings cannot be used; the message names the setting."""


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's clients (producer, consumer, admin).

    Empty for PLAINTEXT, so a plain local broker sees the clients it always saw.
    The SASL password is in the result as plain text: pass it to a client, never print it.
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in SSL_PROTOCOLS:
        options["ssl_check_hostname"] = True
        files = {
            "ssl_cafile": settings.kafka_ssl_cafile,
            "ssl_certfile": settings.kafka_ssl_certfile,
            "ssl_keyfile": settings.kafka_ssl_keyfile,
        }
        options |= {name: str(path) for name, path in files.items() if path is not None}
    if protocol in SASL_PROTOCOLS and settings.kafka_sasl_password is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers (against GEMBA_KAFKA_SSL_CAFILE if set)
    and presents the client certificate when one is configured."""
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(f"cannot load GEMBA_KAFKA_SSL_CAFILE {cafile}: {exc}") from None
    certfile, keyfile = settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    if certfile is not None:
        try:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSecurityError(
                f"cannot load GEMBA_KAFKA_SSL_CERTFILE {certfile} "
                f"(key: {keyfile or 'in the same file'}): {exc}"
            ) from None
    return context


def faust_broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's `broker_credentials` (for aiokafka): None for PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials  # Faust loads only where needed

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(ssl_context(settings))
    password = settings.kafka_sasl_password
    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password is not None else None,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
        mechanism=settings.kafka_sasl_mechanism,
    )


def pseudonymiser(settings: Settings) -> Pseudonymiser | None:
    """The contact-id pseudonymiser under GEMBA_PSEUDONYMISE_KEY, or None when it is unset."""
    key = settings.pseudonymise_key
    return Pseudonymiser(key.get_secret_value().encode()) if key is not None else None


def open_publisher(settings: Settings, topic: str | None = None) -> KafkaEventPublisher:
    """The event publisher every command should use: secured, and pseudonymising if asked."""
    try:
        return KafkaEventPublisher(
            settings.bootstrap_servers,
            topic or settings.touches_topic,
            client_options=kafka_client_options(settings),
            pseudonymiser=pseudonymiser(settings),
        )
    except PublishError as exc:
        raise _no_session(settings, exc) from None


def ensure_topic_for(
    settings: Settings,
    topic: str,
    config: Mapping[str, str] = LOG_TOPIC_CONFIG,
    partitions: int | None = None,
) -> bool:
    """Create `topic` (infinite retention unless `config` says otherwise) if it is missing,
    with GEMBA_TOPIC_PARTITIONS partitions unless told, replicated GEMBA_TOPIC_REPLICATION_FACTOR
    times."""
    try:
        return ensure_topic(
            settings.bootstrap_servers,
            topic,
            partitions or settings.topic_partitions,
            config,
            client_options=kafka_client_options(settings),
            replication_factor=settings.topic_replication_factor,
        )
    except InvalidReplicationFactorError:
        raise PublishError(
            f"Kafka at {settings.bootstrap_servers} refused to create the topic {topic} with "
            f"{settings.topic_replication_factor} replicas: it has fewer brokers than that. "
            "Set GEMBA_TOPIC_REPLICATION_FACTOR to at most the number of brokers (1 for a "
            "single broker, 3 for a cluster of three or more)."
        ) from None
    except PublishError as exc:
        raise _no_session(settings, exc) from None


def _no_session(settings: Settings, unreachable: PublishError) -> PublishError:
    """`unreachable`, or, when the servers do accept connections, what to check instead.

    A wrong password or a port that speaks another protocol looks like an outage to
    kafka-python (3.0.12): it drops the broker's "authentication failed" reply, which
    comes with the close of the connection, and gives up after its bootstrap timeout.
    """
    try:
        check_reachable(settings.bootstrap_servers)
    except PublishError:
        return unreachable
    servers, protocol = settings.bootstrap_servers, settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return PublishError(
            f"Kafka at {servers} accepts connections but does not answer over PLAINTEXT "
            "(or is still starting). If the cluster requires TLS or SASL, set "
            "GEMBA_KAFKA_SECURITY_PROTOCOL and the settings it needs."
        )
    checks = []
    if protocol in SASL_PROTOCOLS:
        checks.append(
            "the password and user (GEMBA_KAFKA_SASL_PASSWORD, GEMBA_KAFKA_SASL_USERNAME) and "
            f"the mechanism (GEMBA_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism})"
        )
    if protocol in SSL_PROTOCOLS:
        checks.append("the CA that signed the brokers' certificates (GEMBA_KAFKA_SSL_CAFILE)")
    checks.append(f"that the servers speak {protocol} on that port (GEMBA_KAFKA_SECURITY_PROTOCOL)")
    return PublishError(
        f"Kafka at {servers} accepts connections but no {protocol} session could be opened: "
        "most likely the credentials or the TLS settings were refused (the brokers' log says "
        f"which). Check {'; '.join(checks)}."
    )
