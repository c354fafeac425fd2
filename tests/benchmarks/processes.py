"""Servers under test as processes: start one, time it to ready, read its workers' memory and CPU, stop it all."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port

PROBE_INTERVAL_SECONDS = 0.05
STOP_GRACE_SECONDS = 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DATABASE_PROCESS_NAMES = ("mariadbd", "mysqld")


@dataclass
class RunningServer:
    """A server process started by the harness, ready to take requests."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    cold_start_seconds: float

    def tail(self, characters: int = 3000) -> str:
        """The end of what the server printed."""
        return self.log.read_text(errors="replace")[-characters:]


@dataclass(frozen=True)
class WorkerMemory:
    """Resident and proportional set size of one worker process, in MiB."""

    pid: int
    rss_mib: float
    pss_mib: float


@contextmanager
def running_server(name: str, command: list[str], *, cwd: Path, env: dict[str, str], probe: str,
                   log_dir: Path, ready_timeout: float, port: int | None = None) -> Iterator[RunningServer]:
    """Start `command` (with `{port}` filled in), wait until GET `probe` answers 200, stop it and its workers after.

    `port` is the HTTP port the server listens on (default: a free one), for servers configured by file.
    """
    port = port or free_port()
    log = log_dir / f"{name}-{port}.log"
    argv = [part.format(port=port) for part in command]
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ready(process, url + probe, ready_timeout, log)
        yield RunningServer(name, url, process, log, time.perf_counter() - started)
    finally:
        stop_process_tree(process)


def _wait_for_ready(process: subprocess.Popen[bytes], probe_url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}; its log, {log}, ends:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            try:
                if client.get(probe_url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(PROBE_INTERVAL_SECONDS)
    raise TimeoutError(f"{probe_url} did not answer 200 within {timeout:.0f} s; see {log}")


def stop_process_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL whatever of it or its descendants outlives the grace period.

    BentoML's workers run in process groups of their own, so they are found as descendants, not by group.
    """
    if process.poll() is not None:
        return
    family = [process.pid, *descendants(process.pid)]
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(10)
    survivors = [pid for pid in family if _alive(pid)]
    for pid in survivors:
        _signal(pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _signal(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, parents before children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = children.get(frontier.pop(0), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def worker_pids(server: RunningServer) -> list[int]:
    """The pids of a BentoML server's worker processes (children running `_bentoml_impl.worker`)."""
    return [pid for pid in descendants(server.process.pid) if "_bentoml_impl.worker" in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def worker_memory(pid: int) -> WorkerMemory:
    """RSS and PSS of one process, from /proc/PID/smaps_rollup."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])  # kB
    return WorkerMemory(pid, values["Rss"] / 1024, values["Pss"] / 1024)


def server_pids(server: RunningServer) -> list[int]:
    """The server's own process and all its descendants."""
    return [server.process.pid, *descendants(server.process.pid)]


def database_pids() -> list[int]:
    """The local MariaDB/MySQL server processes."""
    return [int(comm.parent.name) for comm in Path("/proc").glob("[0-9]*/comm")
            if _read_or_empty(comm).strip() in DATABASE_PROCESS_NAMES]


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def machine_busy_cpu_seconds() -> float:
    """CPU time all cores have spent not idle since boot, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time consumed so far by the given live processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process and of its children that have exited and been waited for (the
    load generators it ran)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def finish_bounded(process: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float,
                   what: str) -> tuple[str, str]:
    """Wait for a measuring tool to exit within `timeout` (killing it otherwise); its output, or a clear error."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)
        raise RuntimeError(f"{what} did not finish within {timeout:.0f} s") from None
    out, err = (text.decode(errors="replace") if isinstance(text, bytes) else text or "" for text in (stdout, stderr))
    if process.returncode != 0:
        raise RuntimeError(f"{what} failed ({process.returncode}): {err.strip()}")
    return out, err
