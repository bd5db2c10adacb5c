"""Where the worker's web server (health, ready, metrics, pages) listens, and how it is reached."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.app import create_app
from streams.settings import Settings


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
