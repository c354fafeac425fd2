"""Helpers shared by the tests: the tiers and what each may use, train.py's split, external services that must run
in CI, and what an abusive request may cost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MAX_ERROR_BODY = 64 * 1024  # bytes: the largest answer to a request the service refuses
MAX_RSS_GROWTH = 100 * 1024 * 1024  # bytes: the most one abusive request may grow the workers

# The tiers (pytest markers, declared in pyproject.toml): every test has exactly one, `fast` unless marked.
TIERS = ("fast", "database", "system", "deploy", "browser")
# What a test may use beyond the pytest process, and the tiers allowed to use it.
NEEDS = {
    "MariaDB": ("database", "system", "deploy", "browser"),
    "a server process": ("system", "deploy", "browser"),
    "Docker": ("deploy",),
    "Chromium": ("browser",),
}
# The fixtures that show a need at collection; tests/servers.py checks the rest as it starts them.
FIXTURE_NEEDS = {"mysql_required": "MariaDB", "mysql_db": "MariaDB", "proxied": "MariaDB",
                 "shared_server": "a server process", "docker_env": "Docker", "browser": "Chromium"}
_tier_of: dict[str, str] = {}  # each collected test's tier, by node id


def note_tier(node_id: str, tier: str) -> None:
    """Remember a collected test's tier, for `require_tier` while it runs."""
    _tier_of[node_id] = tier


def require_tier(need: str) -> None:
    """Fail the running test if its tier may not use `need` (no check outside a pytest run)."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]  # "node id (setup)"
    tier = _tier_of.get(running)
    if tier is not None and tier not in NEEDS[need]:
        pytest.fail(f"{running} is a {tier} test but uses {need}: mark it {' or '.join(NEEDS[need])}",
                    pytrace=False)


class Split(NamedTuple):
    """train.py's split of the dataset (conftest's `split`): features (float64, in FEATURES order) and varieties."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def require(available: bool, what: str) -> None:
    """Skip the calling test when `what` is unavailable locally; fail it in CI, where it must run."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available", pytrace=False)
    pytest.skip(f"{what} is not available here")


def rss(pids: list[int]) -> int:
    """The processes' resident memory, in bytes."""
    return sum(_status(pid, "VmRSS") for pid in pids)


def peak_rss(pids: list[int]) -> int:
    """The processes' peak resident memory since `reset_peak_rss`, in bytes."""
    return sum(_status(pid, "VmHWM") for pid in pids)


def reset_peak_rss(pids: list[int]) -> None:
    """Start counting the processes' peak memory from now (Linux: writing 5 to clear_refs)."""
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} for process {pid}")
