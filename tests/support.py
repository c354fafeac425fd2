"""Helpers shared by the tests: external services that must run in CI, and what an abusive request may cost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MAX_ERROR_BODY = 64 * 1024  # bytes: the largest answer to a request the service refuses
MAX_RSS_GROWTH = 100 * 1024 * 1024  # bytes: the most one abusive request may grow the workers


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
