"""Where the worker's web server (health, ready, metrics, pages) listens, how it is reached,
and which host names it answers to."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from projections.policy.model import default_policy
from streams.dashboard.handlers import DashboardOptions
from streams.dashboard.server import create_dashboard
from streams.host_check import host_allowed, host_name
from streams.settings import Settings
from streams.worker.app import create_app


def test_the_worker_web_server_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)

    app = create_app(settings)

    assert settings.worker_web_host == "127.0.0.1"
    assert app.conf.web_bind == "127.0.0.1"
    assert str(app.conf.canonical_url) == "http://127.0.0.1:6066"
    assert settings.worker_web_url == "http://127.0.0.1:6066"


def test_gemba_worker_web_host_binds_every_interface_for_a_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMBA_WORKER_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("GEMBA_WORKER_WEB_PORT", "7066")
    settings = Settings(state_dir=tmp_path)

    app = create_app(settings)

    assert app.conf.web_bind == "0.0.0.0"
    # Other workers forward deal pages to this one by its host name, not by 0.0.0.0.
    assert app.conf.web_host == socket.gethostname()
    # The command line, on the same machine, still asks over loopback.
    assert settings.worker_web_url == "http://127.0.0.1:7066"


def test_a_worker_bound_to_one_address_is_reached_at_that_address(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, worker_web_host="::1")

    app = create_app(settings)

    assert app.conf.web_bind == "::1"
    assert str(app.conf.canonical_url) == "http://[::1]:6066"
    assert settings.worker_web_url == "http://[::1]:6066"


def test_an_empty_worker_web_host_is_refused() -> None:
    with pytest.raises(ValueError, match="worker_web_host"):
        Settings(worker_web_host="")


def _status_by_host(app: Any, *hosts: str) -> list[int]:
    """GET /health of the worker's web app (not started) with each Host header in turn."""

    async def ask() -> list[int]:
        async with TestClient(TestServer(app.web.web_app)) as client:
            answers = [await client.get("/health", headers={"Host": h}) for h in hosts]
            return [answer.status for answer in answers]

    return asyncio.run(ask())


def test_the_worker_web_server_answers_only_requests_addressed_to_a_loopback_name(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(state_dir=tmp_path))

    statuses = _status_by_host(
        app, "127.0.0.1:6066", "localhost:6066", "LOCALHOST", "[::1]:6066",
        "rebinding.example:6066", "127.0.0.1.rebinding.example", "",
    )  # fmt: skip

    assert statuses == [200, 200, 200, 200, 421, 421, 421]


def test_the_worker_answers_to_gemba_allowed_hosts_and_its_canonical_urls_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_CANONICAL_URL", "http://10.1.2.3:6066")  # a pod's IP, for probes
    monkeypatch.setenv("GEMBA_ALLOWED_HOSTS", "gemba-worker.internal, metrics.example")
    monkeypatch.setenv("GEMBA_WORKER_WEB_HOST", "0.0.0.0")
    app = create_app(Settings(state_dir=tmp_path))

    statuses = _status_by_host(
        app, "10.1.2.3:6066", "gemba-worker.internal", "metrics.example:6066",
        f"{socket.gethostname()}:6066", "10.1.2.4:6066", "rebinding.example",
    )  # fmt: skip

    assert statuses == [200, 200, 200, 200, 421, 421]


def test_the_dashboard_answers_by_the_same_rule(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, allowed_hosts="dash.example")
    options = DashboardOptions(port=6070, policy=default_policy(), assumptions_file=None)
    guard = create_dashboard(settings, options).middlewares[0]

    async def status(host: str) -> int:
        async def page(request: web.Request) -> web.Response:
            return web.Response(status=200)

        request = make_mocked_request("GET", "/", headers={"Host": host})
        return (await guard(request, page)).status

    async def statuses() -> list[int]:
        hosts = ("127.0.0.1:6070", "[::1]:6070", "Dash.Example", "rebinding.example:6070")
        return [await status(host) for host in hosts]

    assert asyncio.run(statuses()) == [200, 200, 200, 421]


def test_a_host_header_is_compared_by_its_name_alone() -> None:
    assert host_name("[::1]:6070") == "::1"
    assert host_name("LocalHost.:6070") == "localhost"
    assert host_allowed("localhost:1", [])
    assert host_allowed("Dash.Example:443", ["dash.example"])
    assert not host_allowed(None, ["dash.example"])
    assert not host_allowed(":6070", [""])
