"""score.py against pandas alone, side by side in one run: a CSV of N beans to Parquet (issue #23's targets).

    BENTOML_HOME=... python tests/benchmarks/score_bench.py [--rows 1000000] [--big-rows 5000000] [--repeat 3]

The baseline is what any such job must do at least: `pd.read_csv(csv).to_parquet(out)` in a fresh process. Both are
timed twice: the whole process (interpreter, imports, for score.py also loading the model) and the work alone (what
each reports: score.py's summary line, the baseline's own clock). Peak memory is each process's own (wait4), for
score.py at N and at --big-rows beans (the target: flat). Each measured process runs right after an unmeasured
run of the same command (see main). Each pair is printed as it ends, with the machine's load average before it and
the CPU time other processes took while each ran (Linux's /proc/stat): a figure taken while they held the cores says
little. The CSVs are the shared dataset repeated, built once.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DATASET = Path(os.environ.get("DRYBEAN_DATA", ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv"))
BASELINE = ("import sys, time, pandas as pd; start = time.perf_counter(); "
            "pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2]); print(time.perf_counter() - start)")
SUMMARY_SECONDS = re.compile(r"rows in ([0-9.]+) s")


@dataclass(frozen=True)
class Run:
    """One process: its wall time, the time its work took by its own clock, its peak resident memory, and the CPU
    time the rest of the machine used meanwhile."""

    wall: float
    work: float
    peak_mb: float
    others_cpu: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=5_000_000, help="the second size for peak memory (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="drybean_svc:latest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="score-bench-") as folder:
        work = Path(folder)
        source = repeated_csv(work / f"{args.rows}.csv", args.rows)
        pandas_runs, score_runs = [], []
        def baseline() -> Run:
            return run([sys.executable, "-c", BASELINE, str(source), str(work / "pandas.parquet")],
                       lambda out, err: float(out.strip()))

        print(f"{args.rows:,} beans, CSV -> Parquet, run after run (load: the machine's 1-minute load average "
              "before the pair, our own runs included; others' CPU: what other processes used while each ran):\n")
        print("| run | load | pandas (s) | score.py (s) | score.py / pandas | others' CPU pandas / score.py (s) | "
              "peak RSS pandas / score.py (MB) |\n|---|---|---|---|---|---|---|")
        for number in range(1, args.repeat + 1):  # alternated, so that both meet the same machine; each run right
            # after one of its own: this VM's kernel hands memory idle for seconds back to the host, and the next
            # process to touch it pays for it (pandas' whole-file read took 7 s instead of 2, 6 s of it in page faults)
            load = os.getloadavg()[0]
            baseline()
            pandas_runs.append(baseline())
            run_score(source, work / "scored.parquet", args.model)
            score_runs.append(run_score(source, work / "scored.parquet", args.model))
            pandas_run, score_run = pandas_runs[-1], score_runs[-1]
            print(f"| {number} | {load:.2f} | {pandas_run.wall:.2f} | {score_run.wall:.2f} | "
                  f"{score_run.wall / pandas_run.wall:.2f}x | {pandas_run.others_cpu:.1f} / "
                  f"{score_run.others_cpu:.1f} | {pandas_run.peak_mb:.0f} / {score_run.peak_mb:.0f} |", flush=True)
        print(f"\n{args.rows:,} beans, CSV -> Parquet, {args.repeat} runs each (median):\n")
        print("| | whole process (s) | work alone (s) | peak RSS (MB) |\n|---|---|---|---|")
        for name, runs in (("pandas read_csv + to_parquet", pandas_runs), ("score.py", score_runs)):
            print(f"| {name} | {median(runs, 'wall'):.2f} | {median(runs, 'work'):.2f} | "
                  f"{median(runs, 'peak_mb'):.0f} |")
        print(f"\nscore.py / pandas: {median(score_runs, 'wall') / median(pandas_runs, 'wall'):.2f}x whole process, "
              f"{median(score_runs, 'work') / median(pandas_runs, 'work'):.2f}x work alone (target <= 1.5x)")
        if args.big_rows:
            (work / f"{args.rows}.csv").unlink()
            big = repeated_csv(work / f"{args.big_rows}.csv", args.big_rows)
            load = os.getloadavg()[0]
            big_run = run_score(big, work / "big.parquet", args.model)
            print(f"score.py peak RSS: {median(score_runs, 'peak_mb'):.0f} MB at {args.rows:,} beans, "
                  f"{big_run.peak_mb:.0f} MB at {args.big_rows:,} ({big_run.work:.1f} s, load {load:.2f}, others' CPU "
                  f"{big_run.others_cpu:.1f} s)")


def repeated_csv(path: Path, rows: int) -> Path:
    """The dataset repeated to `rows` beans, written a copy at a time."""
    frame = pd.read_csv(DATASET)
    written = 0
    with path.open("w") as out:
        while written < rows:
            part = frame.iloc[:rows - written]
            part.to_csv(out, header=written == 0, index=False)
            written += len(part)
    return path


def run_score(source: Path, output: Path, model: str) -> Run:
    def seconds(_out: str, err: str) -> float:
        found = SUMMARY_SECONDS.search(err)
        if found is None:
            raise RuntimeError(f"score.py failed:\n{err}")
        return float(found.group(1))

    return run([sys.executable, str(ROOT / "score.py"), str(source), "--output", str(output), "--model", model],
               seconds)


def run(command: list[str], work_seconds: Callable[[str, str], float]) -> Run:
    """Run the command; its wall time, its work's own time (parsed from its stdout and stderr), its peak RSS and the
    CPU time other processes used meanwhile."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        busy, start = busy_seconds(), time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this process's own peak, not the largest child's so far
        wall = time.perf_counter() - start
        others = max(0.0, busy_seconds() - busy - usage.ru_utime - usage.ru_stime)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{stderr[-2000:]}")
    return Run(wall, work_seconds(stdout, stderr), usage.ru_maxrss / 1024, others)


def busy_seconds() -> float:
    """CPU time the machine has spent on anything but idling since it started, all cores (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


if __name__ == "__main__":
    main()
