"""The policy the settings name: one loader for the worker, its sink and the command line."""

from __future__ import annotations

from pathlib import Path

from projections.policy.model import Policy, default_policy, load_policy
from streams.settings import Settings

__all__ = ["policy_of"]


def policy_of(settings: Settings, path: Path | None = None) -> Policy:
    """The policy in `path`, else in GEMBA_POLICY_FILE, else the shipped default.

    Raises PolicyError (naming the file and what is wrong with it) for a file that is
    missing or not a valid policy; the caller's edge decides how to tell the user.
    """
    chosen = path or settings.policy_file
    return load_policy(chosen) if chosen else default_policy()
