"""Every deploy file: the variables it names are settings, the commands it runs are
real `gemba` commands, and its image tags are the project's version."""

from __future__ import annotations

import re
import shlex
from typing import Any

import click
import yaml

from tests.support.deploy_files import (
    DEPLOY,
    KUSTOMIZATION,
    PYPROJECT,
    VARIABLE_REFERENCE,
    GembaContainer,
    all_containers,
    faust_env_names,
    image,
    image_argv,
    parse_gemba,
    python_env_names,
    setting_env_names,
    settings_of,
)


def test_every_gemba_variable_named_anywhere_in_deploy_is_a_setting() -> None:
    unknown = {
        f"{path.relative_to(DEPLOY)}: {name}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"\bGEMBA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
        if name not in setting_env_names()
    }
    assert not unknown, f"not a Settings field (streams/settings.py): {sorted(unknown)}"


def test_every_variable_set_for_a_gemba_container_is_read_by_gemba_faust_or_python() -> None:
    unknown = []
    for container in all_containers():
        referenced = set(VARIABLE_REFERENCE.findall(" ".join(map(str, _set_values(container)))))
        read = setting_env_names() | faust_env_names() | python_env_names() | referenced
        unknown += [f"{container.where}: {name}" for name in container.env if name not in read]
    assert not unknown


def _set_values(container: GembaContainer) -> list[Any]:
    """The values as written in the file (before $(VAR) references are expanded)."""
    return [item.get("value", "") for item in container.spec.get("env", [])]


def test_every_gemba_containers_environment_passes_settings_validation() -> None:
    refused = []
    for container in (*all_containers(), _image_default()):
        try:
            settings_of(container)
        except ValueError as exc:  # pydantic's ValidationError
            refused.append(f"{container.where}: {exc}")
    assert not refused


def _image_default() -> GembaContainer:
    """The image run with no arguments and nothing set (`docker run gemba:...`)."""
    argv = image_argv(None, None)
    return GembaContainer("the image's default", argv, dict(image().env), {}, {}, {}, 1)


def test_every_gemba_container_runs_a_real_subcommand_with_real_options() -> None:
    refused = []
    for container in (*all_containers(), _image_default()):
        try:
            parse_gemba(container.argv)
        except click.ClickException as exc:
            command = shlex.join(container.argv)
            refused.append(f"{container.where}: {command}: {exc.format_message()}")
    assert not refused


def test_every_image_tag_in_deploy_is_the_project_version() -> None:
    version = PYPROJECT["project"]["version"]
    tags = [
        f"{path.relative_to(DEPLOY)}: gemba:{tag}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for tag in re.findall(r"\bgemba:(\d[\w.]*\w)", path.read_text())
    ]
    kustomize = yaml.safe_load(KUSTOMIZATION.read_text())
    tags += [f"kustomization: {i['name']}:{i['newTag']}" for i in kustomize.get("images", [])]
    assert tags, "no image tag found in deploy/"
    assert all(tag.endswith(f":{version}") for tag in tags), tags
