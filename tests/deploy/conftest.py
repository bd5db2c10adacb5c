"""The deploy tests run offline, and share the worker apps the deploy files would start.

Both fixtures are package-scoped: the worker apps are built once for every module
that asks for them, and built while the network is already refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from streams.settings import Settings
from streams.worker.app import create_app
from tests.support.deploy_files import (
    WorkerApp,
    all_containers,
    process_environment,
    topics_of,
    workers,
)


@pytest.fixture(scope="package", autouse=True)
def _offline() -> Iterator[None]:
    """Refuse connections and name look-ups beyond this machine while tests/deploy runs."""
    getaddrinfo = socket.getaddrinfo

    def local(host: object) -> bool:
        if host in {None, "localhost"}:
            return True
        try:
            return ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            return False

    def guarded(connect: Any) -> Any:
        def guarded_connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in {socket.AF_INET, socket.AF_INET6} and not local(address[0]):
                raise OSError(f"tests/deploy is offline: refused to connect to {address}")
            return connect(sock, address)

        return guarded_connect

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host):
            raise OSError(f"tests/deploy is offline: refused to look up {host}")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for method in ("connect", "connect_ex"):
            patch.setattr(socket.socket, method, guarded(getattr(socket.socket, method)))
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield


@pytest.fixture(scope="package")
def worker_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WorkerApp]:
    """Every `gemba worker` container of the deploy files, as the app it would run."""
    built = {}
    for container in workers(all_containers()):
        scratch = tmp_path_factory.mktemp("worker")
        with process_environment(container.env):  # Faust reads its own variables too
            settings = Settings()
            # No CA file here: the app is built as PLAINTEXT; the rest is the container's.
            local = settings.model_copy(
                update={
                    "kafka_security_protocol": "PLAINTEXT",
                    "kafka_ssl_cafile": None,
                    "state_dir": scratch,
                    "duckdb_path": scratch / "history.duckdb",
                }
            )
            app = create_app(local)
        web: Any = app.web  # Faust's aiohttp driver: the routes are aiohttp's
        routes = frozenset(r.resource.canonical for r in web.web_app.router.routes())
        built[container.where] = WorkerApp(settings, app, topics_of(local, app), routes)
    return built
