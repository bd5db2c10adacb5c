"""One home per rule: each SQL function of the replay names its Python twin, and back.

A DOMAIN rule is written twice, in the Python fold (projections.deal) and in the SQL
fold (projections.archive.fold_sql); the docstring of each says where the other is
(`Python twin: module.function`, `SQL twin: module.function`), so that changing a
rule means opening two files that point at each other. These tests keep the pointers
true: every name resolves, and every pointer is answered by one naming it back.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from projections.archive import canonical, replay_sql
from projections.archive.fold_sql import lines, merge, policy_sql, rules
from projections.deal import (
    event_set,
    measure,
    stages,
    stall,
    touch_rules,
    touches,
    value_stream,
    waiting,
)
from projections.policy import model

RULE_MODULES = (rules, merge)
"""Every public function here is a DOMAIN rule in SQL: each must name its Python twin."""
SQL_MODULES = (*RULE_MODULES, lines, policy_sql, replay_sql)
PYTHON_MODULES = (
    event_set, measure, stages, stall, touch_rules, touches, value_stream, waiting, model,
    canonical,
)  # fmt: skip


def twin_paragraph(thing: Any, side: str) -> str | None:
    """The `<side> twin:` paragraph of a docstring (up to a blank line), if it has one."""
    doc = inspect.getdoc(thing) or ""
    found = re.search(rf"{side} twin: (.+?)(?:\n\s*\n|$)", doc, re.DOTALL)
    return " ".join(found.group(1).split()) if found else None


def resolve(dotted: str) -> Any:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


def first_name(paragraph: str) -> str:
    """The first dotted name in a twin paragraph (what it points at)."""
    found = re.match(r"[A-Za-z_][\w.]*[A-Za-z_0-9]", paragraph)
    assert found, paragraph
    return found.group(0)


def names(paragraph: str | None, name: str) -> bool:
    return paragraph is not None and re.search(rf"\b{re.escape(name)}\b", paragraph) is not None


def documented(modules: tuple[ModuleType, ...]) -> Iterator[tuple[str, Any]]:
    """Functions, classes and their methods and properties defined in the modules."""
    for module in modules:
        for name, thing in vars(module).items():
            if getattr(thing, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(thing):
                yield f"{module.__name__}.{name}", thing
            elif inspect.isclass(thing):
                yield f"{module.__name__}.{name}", thing
                for member, value in vars(thing).items():
                    if inspect.isfunction(value) or isinstance(value, property):
                        yield f"{module.__name__}.{name}.{member}", value


def by_path(found: list[tuple[str, Any]]) -> list[Any]:
    return [pytest.param(path, thing, id=path) for path, thing in found]


def sql_rules() -> list[tuple[str, Any]]:
    return [
        (f"{module.__name__}.{name}", function)
        for module in RULE_MODULES
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name in module.__all__
    ]


def sql_twins_with_a_python_twin() -> list[tuple[str, Any]]:
    return [(path, t) for path, t in documented(SQL_MODULES) if twin_paragraph(t, "Python")]


def python_twins_with_a_sql_twin() -> list[tuple[str, Any]]:
    return [(path, t) for path, t in documented(PYTHON_MODULES) if twin_paragraph(t, "SQL")]


@pytest.mark.parametrize(("path", "function"), by_path(sql_rules()))
def test_each_sql_rule_names_a_python_twin(path: str, function: Any) -> None:
    assert twin_paragraph(function, "Python"), f"{path} names no `Python twin:`"


@pytest.mark.parametrize(("path", "sql"), by_path(sql_twins_with_a_python_twin()))
def test_the_python_twin_exists_and_names_the_sql_function_back(path: str, sql: Any) -> None:
    pointer = first_name(twin_paragraph(sql, "Python") or "")
    python = resolve(pointer)
    name = path.rsplit(".", 1)[1]
    assert names(twin_paragraph(python, "SQL"), name), (
        f"{pointer} is the Python twin of {path}: its docstring's `SQL twin:` must name {name}"
    )


@pytest.mark.parametrize(("path", "python"), by_path(python_twins_with_a_sql_twin()))
def test_the_sql_twin_exists_and_names_the_python_function_back(path: str, python: Any) -> None:
    pointer = first_name(twin_paragraph(python, "SQL") or "")
    sql = resolve(pointer)
    name = path.rsplit(".", 1)[1]
    assert names(twin_paragraph(sql, "Python"), name), (
        f"{pointer} is the SQL twin of {path}: its docstring's `Python twin:` must name {name}"
    )


def test_every_rule_of_the_python_fold_has_a_sql_twin() -> None:
    twins = {path for path, _ in python_twins_with_a_sql_twin()}
    rules_of_the_fold = {
        "projections.deal.event_set.known_at",
        "projections.deal.touches.touch_span",
        "projections.deal.value_stream._life",
        "projections.deal.stages.stage_history",
        "projections.deal.touch_rules._within_life",
        "projections.deal.touch_rules._History",
        "projections.deal.touch_rules._meeting",
        "projections.deal.touch_rules._call",
        "projections.deal.touch_rules._email",
        "projections.deal.touch_rules._quote",
        "projections.deal.waiting.ball_in_our_court",
        "projections.deal.stall.stall_episodes",
        "projections.deal.measure.time_sets",
        "projections.deal.value_stream._stage_streams",
    }
    assert rules_of_the_fold <= twins, sorted(rules_of_the_fold - twins)
