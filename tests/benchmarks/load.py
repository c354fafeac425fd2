"""Load generators: wrk for many small concurrent requests, sequential httpx requests for large ones."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.benchmarks.processes import finish_bounded

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")
WRK_REQUEST_TIMEOUT = "5s"
JSON_HEADERS = {"Content-Type": "application/json"}
# The tutorial's example bean, classified DERMASON.
EXAMPLE_BEAN = [33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, 207.93, 0.82, 0.99, 0.93, 0.82, 0.01, 0.0, 0.67,
                1.0]


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured, from the client's side."""

    requests: int
    seconds: float
    ok: int  # 2xx answers
    errors: int  # non-2xx answers plus socket errors (connect, read, write, timeout)
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second of the run."""
        return self.requests / self.seconds


def tutorial_body(rows: list[list[float]], *, store: bool) -> str:
    """A request body as the tutorial's client sent it: the rows as a JSON-encoded string."""
    return json.dumps({"data": json.dumps(rows), "store": store})


def wrk_path() -> str:
    """The wrk executable, or a clear error naming how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk not found: apt-get install wrk")
    return path


def run_wrk(url: str, body: str | bytes, *, connections: int, seconds: float,
            headers: Mapping[str, str] = JSON_HEADERS) -> LoadResult:
    """POST `body` with `headers` to `url` from `connections` keep-alive connections for `seconds`."""
    if isinstance(body, str):
        return finish_wrk(start_wrk(url, body, connections=connections, seconds=seconds, headers=headers), seconds)
    with tempfile.NamedTemporaryFile(prefix="wrk-body-") as file:  # binary bodies hold NUL bytes: no env variable
        file.write(body)
        file.flush()
        wrk = start_wrk(url, "", connections=connections, seconds=seconds, headers=headers, body_file=Path(file.name))
        return finish_wrk(wrk, seconds)


def start_wrk(url: str, body: str, *, connections: int, seconds: float, headers: Mapping[str, str] = JSON_HEADERS,
              body_file: Path | None = None) -> subprocess.Popen[str]:
    """Start wrk (one thread) in the background, posting `body` (or `body_file`'s bytes); `finish_wrk` collects
    its result."""
    command = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", WRK_REQUEST_TIMEOUT,
               "-s", str(WRK_SCRIPT), url]
    env = {**os.environ, "WRK_BODY": body, "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    if body_file is not None:
        env["WRK_BODY_FILE"] = str(body_file)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(wrk: subprocess.Popen[str], seconds: float) -> LoadResult:
    """Wait (bounded) for a wrk started by `start_wrk` and read the JSON line its Lua script printed."""
    stdout, _ = finish_bounded(wrk, seconds + 60, "wrk")
    summary = json.loads(stdout.strip().splitlines()[-1])
    socket_errors = summary["connect"] + summary["read"] + summary["write"] + summary["timeout"]
    return LoadResult(requests=summary["requests"], seconds=summary["duration_us"] / 1e6,
                      ok=summary["requests"] - summary["non_2xx"], errors=summary["non_2xx"] + socket_errors,
                      p50_ms=summary["p50_us"] / 1000, p99_ms=summary["p99_us"] / 1000)


def run_sequential(url: str, body: str | bytes, *, requests: int, timeout: float = 120,
                   headers: Mapping[str, str] = JSON_HEADERS) -> LoadResult:
    """POST `body` with `headers` to `url` `requests` times, one after another, over one connection."""
    latencies: list[float] = []
    errors = 0
    with httpx.Client(timeout=timeout, headers=headers) as client:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                answer = client.post(url, content=body)
                errors += not answer.is_success
            except httpx.TransportError:
                errors += 1
            latencies.append(time.perf_counter() - started)
    return LoadResult(requests=requests, seconds=sum(latencies), ok=requests - errors, errors=errors,
                      p50_ms=statistics.median(latencies) * 1000, p99_ms=percentile(latencies, 99) * 1000)


def percentile(values: list[float], percent: float) -> float:
    """The nearest-rank `percent`th percentile of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]
