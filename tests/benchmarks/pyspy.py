"""Sample one worker with py-spy while load runs, and say where its time goes: threads, packages, functions."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.processes import finish_bounded

ROOT = Path(__file__).resolve().parents[2]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")
STDLIB = re.compile(r"/lib/python3\.\d+/")
# Installed distributions whose import name differs from the name people know them by.
PACKAGES = {"sklearn": "scikit-learn", "_bentoml_sdk": "bentoml", "_bentoml_impl": "bentoml"}


def py_spy_path() -> str:
    """The py-spy executable beside this Python, or a clear error naming how to install it."""
    candidate = Path(sys.executable).with_name("py-spy")
    path = str(candidate) if candidate.exists() else shutil.which("py-spy")
    if path is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    return path


def start_recording(pid: int, seconds: float, output: Path, *, native: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling `pid` (all threads) into collapsed stacks at `output`.

    Python frames only, without pausing the process; or with `native`, C frames too (the garbage collector, system
    calls), which py-spy can only read by pausing the process at each sample: fewer samples, some slowdown.
    """
    mode = ["--native", "--rate", str(NATIVE_RATE)] if native else ["--nonblocking"]
    command = [py_spy_path(), "record", "--pid", str(pid), "--duration", f"{max(1, round(seconds))}", *mode,
               "--threads", "--full-filenames", "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_recording(recorder: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait for py-spy to write its file; a clear error if it could not."""
    finish_bounded(recorder, seconds + 60, "py-spy")


NATIVE_RATE = 50  # samples per second when pausing the process for C frames
TAIL_FRAMES = 4  # frames kept when grouping stacks by where they end
TRUNK_SHARE = 0.95  # functions in this share of the widest function's samples are the trunk, not news


@dataclass
class ThreadProfile:
    """Aggregated samples of one thread: by package of the leaf frame, by function, by stack tail."""

    samples: int = 0
    packages: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    total_time: Counter[str] = field(default_factory=Counter)
    tails: Counter[str] = field(default_factory=Counter)

    def add(self, frames: list[str], count: int) -> None:
        """Count one sampled stack, outermost frame first."""
        functions = [_function(frame) for frame in frames]
        self.samples += count
        if functions:
            self.self_time[functions[-1]] += count
            self.packages[_package(frames[-1])] += count
            self.tails[" ← ".join(reversed(functions[-TAIL_FRAMES:]))] += count
        for function in set(functions):
            self.total_time[function] += count

    def branches(self) -> Counter[str]:
        """Total time per function without the trunk (event loop, runner) that nearly every sample passes through."""
        widest = max(self.total_time.values(), default=0)
        return Counter({name: count for name, count in self.total_time.items() if count < TRUNK_SHARE * widest})


def summarise(collapsed: Path) -> dict[str, ThreadProfile]:
    """Read py-spy's raw output (`thread (tid): name;frame;...;leaf COUNT` per line), per thread name."""
    threads: dict[str, ThreadProfile] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        thread, *frames = stack.split(";")
        name = thread.partition(": ")[2] or thread
        threads.setdefault(name, ThreadProfile()).add(frames, int(count_text))
    return dict(sorted(threads.items(), key=lambda item: -item[1].samples))


def _function(frame: str) -> str:
    match = FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({_short_path(match['file'])})"


def _short_path(file: str) -> str:
    if file.startswith("/") and not file.endswith(".py"):  # a native library: its name says enough
        return Path(file).name
    if "site-packages/" in file:
        return file.split("site-packages/")[-1]
    if file.startswith(f"{ROOT}/"):
        return file.removeprefix(f"{ROOT}/")
    return STDLIB.split(file)[-1]


def _package(frame: str) -> str:
    match = FRAME.match(frame)
    file = match["file"] if match else frame
    top = _short_path(file).split("/")[0].removesuffix(".py")
    if "site-packages/" in file:
        return PACKAGES.get(top, top)
    if file.startswith(f"{ROOT}/"):
        return "this project"
    if file.startswith("/") and not file.endswith(".py"):
        return f"native: {top}"
    return f"stdlib {top}" if STDLIB.search(file) else f"other: {top}"


def to_markdown(threads: dict[str, ThreadProfile], title: str, top: int = 15) -> str:
    """The profile as markdown: share of samples per thread, then per thread its packages, functions, stacks."""
    samples = sum(thread.samples for thread in threads.values())
    lines = [f"### {title}", "", f"{samples} non-idle samples (a thread blocked reading a socket counts as busy). "
             "Shares are of the thread's own samples.", ""]
    lines += _share_table("thread", Counter({name: t.samples for name, t in threads.items()}), samples, top)
    for name, thread in threads.items():
        lines += [f"#### thread {name}: {thread.samples} samples", ""]
        lines += _share_table("package of the leaf frame", thread.packages, thread.samples, top)
        lines += _share_table("function, self time", thread.self_time, thread.samples, top)
        lines += _share_table("function, total time (trunk left out)", thread.branches(), thread.samples, top)
        lines += _share_table(f"stack tail (last {TAIL_FRAMES} frames, innermost first)", thread.tails,
                              thread.samples, top)
    return "\n".join(lines)


def _share_table(heading: str, counts: Counter[str], samples: int, top: int) -> list[str]:
    rows = [f"| {_escape(name)} | {count} | {100 * count / max(samples, 1):.1f} % |"
            for name, count in counts.most_common(top)]
    return [f"| {heading} | samples | share |", "| --- | ---: | ---: |", *rows, ""]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def to_json(threads: dict[str, ThreadProfile], top: int = 40) -> dict[str, object]:
    """The profile as plain data for results.json."""
    return {name: {"samples": thread.samples, "packages": dict(thread.packages.most_common()),
                   "self": dict(thread.self_time.most_common(top)), "total": dict(thread.branches().most_common(top)),
                   "tails": dict(thread.tails.most_common(top))}
            for name, thread in threads.items()}
