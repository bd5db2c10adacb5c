"""deploy/Dockerfile and its .dockerignore: the Python, the user, the install, the context."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from packaging.specifiers import SpecifierSet

from streams.cli.serve import EXAMPLE_ASSUMPTIONS
from streams.settings import PROJECT_ROOT
from tests.support.deploy_files import (
    DOCKERIGNORE,
    PYPROJECT,
    image,
    under,
)


def test_the_images_python_satisfies_requires_python() -> None:
    match = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", image().base)
    assert match, f"the base image {image().base} is not an official python:X.Y image"
    assert match[1] in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_image_runs_gemba_in_exec_form_so_sigterm_reaches_it() -> None:
    assert image().entrypoint == ["gemba"]
    assert "gemba" in PYPROJECT["project"]["scripts"]
    assert isinstance(image().cmd, list), "CMD in shell form would run under /bin/sh -c"


def test_the_image_installs_the_project_as_pyproject_declares_it() -> None:
    copied = {source.rstrip("/") for sources in image().copies for source in sources}
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {pattern.rstrip("*") for pattern in packages}
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    # What `gemba serve` looks for beside the code (an editable install keeps it there).
    assert any(under(EXAMPLE_ASSUMPTIONS.relative_to(PROJECT_ROOT), c) for c in copied)
    installs = [
        shlex.split(step)[2:]
        for run in image().runs
        for step in run.split("&&")
        if shlex.split(step)[:2] == ["pip", "install"]
    ]
    targets = [[word for word in install if not word.startswith("-")] for install in installs]
    assert targets == [["."]], f"pip should install the checkout itself, no extras: {installs}"


def test_the_images_numeric_user_owns_the_state_dir() -> None:
    assert image().user.isdigit() and int(image().user) != 0
    useradd = next(shlex.split(step) for run in image().runs for step in run.split("&&")
                   if shlex.split(step)[:1] == ["useradd"])  # fmt: skip
    assert useradd[useradd.index("--uid") + 1] == image().user
    assert useradd[useradd.index("--home-dir") + 1] == image().env["GEMBA_STATE_DIR"]


def docker_ignored(path: str, rules: Sequence[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent of it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for include, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not include
    return ignored


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include, pattern = line.startswith("!"), line.removeprefix("!").strip("/")
        regex = "".join(
            "(.*/)?" if token == "**/" else ".*" if token == "**" else "[^/]*" if token == "*"
            else "[^/]" if token == "?" else re.escape(token)
            for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern)
        )  # fmt: skip
        rules.append((include, re.compile(regex)))
    return rules


def test_the_build_context_sends_what_the_image_copies_and_not_the_virtualenv() -> None:
    assert DOCKERIGNORE.is_file(), "the context is the checkout's root: .venv would be sent"
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    copied = [PROJECT_ROOT / source for sources in image().copies for source in sources]
    files = [p for c in copied for p in ([c] if c.is_file() else c.rglob("*")) if p.is_file()]
    sent = [str(p.relative_to(PROJECT_ROOT)) for p in files if "__pycache__" not in p.parts]
    assert sent and not [p for p in sent if docker_ignored(p, rules)]
    for heavy in (".venv", ".gemba", ".git", "streams/__pycache__/app.cpython-311.pyc"):
        assert docker_ignored(heavy, rules), f"{heavy} would be sent to the builder"
