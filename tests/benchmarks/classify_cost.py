"""What issue #22's doubts cost: `/v1/classify` and `/predict` at the commit before them and in the current tree,
served in alternation.

    .venv/bin/python -m tests.benchmarks.classify_cost [--base ddcacfe] [--rounds 3] [--duration 10]
                                                       [--large-requests 10]

Checks the base commit out (`git worktree`, removed after), trains one model with the current train.py into a
throwaway BentoML home (the base's service ignores the metadata it does not know: the trust fit), then, round by
round, serves the base and the current tree in turn, never both at once: `bentoml serve` (2 workers) with the
checkout as working directory, so that its code is served, each on a throwaway MariaDB database migrated by its own
code, with the same settings. On each it measures one bean at 32 connections (wrk; /v1/classify store false and
true, /predict store false and true) and 10,000 beans one request at a time (httpx, median latency; /v1/classify
store false and true). Which code answered is checked: only the current tree's beans carry `prediction_set`, and
both label the 10,000 beans alike.

The cost of a figure is the current tree's time per request over the base's (wrk: the inverse of requests per
second; one at a time: the median latency): 1.15 is 15% dearer. So is the server's CPU per request, the steadier
figure on a shared machine. The 1-minute load average before each server starts and the rest of the machine's CPU
during its measurements are noted. Writes results/classify-cost.md and classify-cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from data.schema import FEATURES
from tests.benchmarks import load, processes
from tests.benchmarks.compare import checkout
from tests.benchmarks.report import machine_header
from tests.benchmarks.run import sample_beans
from tests.servers import BENTOML, MySQLDatabase, mysql_database

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(os.environ.get("DRYBEAN_DATA") or ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv")
DEFAULT_BASE = "ddcacfe"  # "today's": the commit before the doubts (a703d81, 7c185e2, b348b24)
BASE, CURRENT = "base", "current"
LARGE_BEANS = 10_000
CONNECTIONS = 32
READY_TIMEOUT_SECONDS = 120
TRAIN_TIMEOUT_SECONDS = 600
LARGE_TIMEOUT_SECONDS = 120
TARGET_COST = 1.15  # issue #22: /v1/classify within 15% of today's


@dataclass(frozen=True)
class Scenario:
    """One measured load: an endpoint, beans per request, store; one bean is driven by wrk, more one at a time."""

    path: str
    beans: int
    store: bool

    @property
    def name(self) -> str:
        """E.g. "/v1/classify, 1 bean @32, store false"."""
        how = f"1 bean @{CONNECTIONS}" if self.beans == 1 else f"{self.beans:,} beans one at a time"
        return f"{self.path}, {how}, store {str(self.store).lower()}"


SCENARIOS = (Scenario("/v1/classify", 1, False), Scenario("/v1/classify", 1, True),
             Scenario("/v1/classify", LARGE_BEANS, False), Scenario("/v1/classify", LARGE_BEANS, True),
             Scenario("/predict", 1, False), Scenario("/predict", 1, True))


@dataclass(frozen=True)
class Options:
    """What to compare, and for how long."""

    base: str
    rounds: int
    duration: float
    warmup: float
    large_requests: int
    data: Path


@dataclass(frozen=True)
class Figure:
    """One scenario measured on one side in one round."""

    round: int
    side: str
    scenario: str
    beans: int
    requests: int
    errors: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float
    other_cpu_cores: float  # the rest of the machine meanwhile: other engineers' work (noise)
    load_average: float  # 1 minute, before the server started

    @property
    def ms_per_request(self) -> float:
        """What the cost compares: wrk's inverse throughput, or the median latency of requests one at a time."""
        return 1000 / self.requests_per_second if self.beans == 1 else self.p50_ms


def parse_args(argv: list[str] | None) -> Options:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the commit to compare against (default: {DEFAULT_BASE})")
    parser.add_argument("--rounds", type=int, default=3, help="base-then-current rounds (default: 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run (default: 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load per endpoint (default: 2)")
    parser.add_argument("--large-requests", type=int, default=10,
                        help=f"{LARGE_BEANS:,}-bean requests per scenario, after an unmeasured one (default: 10)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset CSV (default: {DEFAULT_DATA})")
    args = parser.parse_args(argv)
    return Options(args.base, args.rounds, args.duration, args.warmup, args.large_requests, args.data)


def main(argv: list[str] | None = None) -> int:
    """Train once, measure base and current in alternation, print the report and write it under results/."""
    options = parse_args(argv)
    load.wrk_path()  # fail before any work when wrk is missing
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that `finally` blocks stop servers and drop databases
    header = {**machine_header(), "base": _describe(options.base), "current": "the working tree at the commit above"}
    large = [dict(zip(FEATURES, row, strict=True)) for row in sample_beans(options.data, LARGE_BEANS)]
    figures: list[Figure] = []
    labels: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="drybeans-classify-cost-") as scratch:
        work = Path(scratch)
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        home = work / "bentoml"
        header["model"] = train(home, work / "train-output", options.data)
        with checkout(options.base, work) as base_tree:
            trees = {BASE: base_tree, CURRENT: ROOT}
            for number in range(1, options.rounds + 1):
                for side in (BASE, CURRENT):
                    print(f"round {number} of {options.rounds}: {side}", flush=True)
                    figures += measure_side(options, side, trees[side], number, home, work, logs, large, labels)
    if labels[BASE] != labels[CURRENT]:
        raise RuntimeError(f"base and current label the {LARGE_BEANS:,} beans differently: not the same model")
    write_results(header, options, figures)
    return 0


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(128 + signal.SIGTERM)


def _describe(commit: str) -> str:
    return subprocess.run(["git", "log", "-1", "--format=%h %s", commit], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()[:100]


def train(home: Path, output: Path, data: Path) -> str:
    """`python train.py` of the current tree into `home`; the saved model's tag."""
    print("training: python train.py (current tree)", flush=True)
    env = {**os.environ, "DRYBEAN_DATA": str(data), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    completed = subprocess.run([sys.executable, "train.py", "--output", str(output)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=TRAIN_TIMEOUT_SECONDS, check=False)
    saved = re.search(r"^saved (\S+)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or saved is None:
        raise RuntimeError(f"train.py failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return saved.group(1)


def measure_side(options: Options, side: str, tree: Path, number: int, home: Path, work: Path, logs: Path,
                 large: list[dict[str, float]], labels: dict[str, list[str]]) -> list[Figure]:
    """Serve `tree` on a fresh database, check which code answers, and measure every scenario on it."""
    load_average = os.getloadavg()[0]
    with mysql_database() as database:
        migrate(tree, database)
        env = {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "DATABASE_URL": "", **database.env,
               "DRYBEANS_SPOOL_DIR": str(work / f"spool-{side}-{number}")}
        command = [str(BENTOML), "serve", "--host", "127.0.0.1", "--port", "{port}"]
        with processes.running_server(side, command, cwd=tree, env=env, probe="/readyz", log_dir=logs,
                                      ready_timeout=READY_TIMEOUT_SECONDS) as server:
            labels.setdefault(side, check_answers(server, side, large))
            for path in ("/predict", "/v1/classify"):
                load.run_wrk(server.url + path, body(Scenario(path, 1, False), large), connections=CONNECTIONS,
                             seconds=options.warmup)
            return [measure(options, server, scenario, body(scenario, large), number, side, load_average)
                    for scenario in SCENARIOS]


def migrate(tree: Path, database: MySQLDatabase) -> None:
    """Create the schema with `tree`'s own migrations, as production does before a server starts."""
    subprocess.run([sys.executable, "-m", "db.migrate"], cwd=tree, env={**os.environ, **database.env},
                   capture_output=True, text=True, timeout=READY_TIMEOUT_SECONDS, check=True)


def body(scenario: Scenario, large: list[dict[str, float]]) -> str:
    """The request body of a scenario: the tutorial's example bean, or the sampled beans."""
    if scenario.path == "/predict":
        return load.tutorial_body([EXAMPLE_ROW], store=scenario.store)
    return json.dumps({"beans": [EXAMPLE_BEAN] if scenario.beans == 1 else large, "store": scenario.store})


def check_answers(server: processes.RunningServer, side: str, large: list[dict[str, float]]) -> list[str]:
    """The labels `server` gives the sampled beans, once it is shown to run `side`'s code: only the current tree's
    answers carry `prediction_set`."""
    answer = httpx.post(server.url + "/v1/classify", content=json.dumps({"beans": large, "store": False}),
                        headers=load.JSON_HEADERS, timeout=LARGE_TIMEOUT_SECONDS)
    answer.raise_for_status()
    predictions = answer.json()["predictions"]
    if ("prediction_set" in predictions[0]) != (side == CURRENT):
        raise RuntimeError(f"the {side} server answered {sorted(predictions[0])}: not the {side} code; see "
                           f"{server.log}")
    return [prediction["label"] for prediction in predictions]


def measure(options: Options, server: processes.RunningServer, scenario: Scenario, content: str, number: int,
            side: str, load_average: float) -> Figure:
    """Drive one scenario while counting the server's and the rest of the machine's CPU time."""
    url = server.url + scenario.path
    drive: Callable[[], load.LoadResult]
    if scenario.beans == 1:
        def drive() -> load.LoadResult:
            return load.run_wrk(url, content, connections=CONNECTIONS, seconds=options.duration)
    else:
        load.run_sequential(url, content, requests=1, timeout=LARGE_TIMEOUT_SECONDS)  # unmeasured

        def drive() -> load.LoadResult:
            return load.run_sequential(url, content, requests=options.large_requests, timeout=LARGE_TIMEOUT_SECONDS)
    pids, database = processes.server_pids(server), processes.database_pids()
    server_before, database_before = processes.cpu_seconds(pids), processes.cpu_seconds(database)
    machine_before, client_before = processes.machine_busy_cpu_seconds(), processes.own_cpu_seconds()
    result = drive()
    server_cpu = processes.cpu_seconds(pids) - server_before
    others = (processes.machine_busy_cpu_seconds() - machine_before - server_cpu
              - (processes.cpu_seconds(database) - database_before) - (processes.own_cpu_seconds() - client_before))
    figure = Figure(round=number, side=side, scenario=scenario.name, beans=scenario.beans, requests=result.requests,
                    errors=result.errors, requests_per_second=result.requests_per_second, p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    server_cpu_ms_per_request=server_cpu * 1000 / result.requests,
                    other_cpu_cores=others / result.seconds, load_average=load_average)
    print(f"  {scenario.name}: {figure.ms_per_request:.2f} ms per request ({result.requests_per_second:,.0f} req/s, "
          f"p99 {result.p99_ms:.1f} ms), server CPU {figure.server_cpu_ms_per_request:.2f} ms per request, "
          f"{result.errors} errors", flush=True)
    if result.errors:
        raise RuntimeError(f"{side}: {scenario.name}: {result.errors} of {result.requests} requests failed; see "
                           f"{server.log}")
    return figure


def costs(figures: list[Figure], scenario: str, value: Callable[[Figure], float]) -> list[float]:
    """Per round, the current tree's `value` over the base's for one scenario."""
    found = {(figure.round, figure.side): value(figure) for figure in figures if figure.scenario == scenario}
    rounds = sorted({number for number, _ in found})
    return [found[number, CURRENT] / found[number, BASE] for number in rounds]


def to_markdown(header: dict[str, str], options: Options, figures: list[Figure]) -> str:
    """The report: per scenario, each round's figures and cost, the median cost; then the noise per server."""
    rounds = sorted({figure.round for figure in figures})
    by_key = {(figure.scenario, figure.round, figure.side): figure for figure in figures}
    lines = ["## /v1/classify's cost of the doubts (issue #22): base vs current, alternated", "",
             *(f"- {key}: {value}" for key, value in header.items()),
             f"- settings: {options.rounds} rounds (base, then current), 2 workers each, a fresh MariaDB database "
             f"each; wrk -t1 -c{CONNECTIONS} {options.duration:g} s after {options.warmup:g} s of warm-up; "
             f"{options.large_requests} sequential {LARGE_BEANS:,}-bean requests after an unmeasured one", "",
             "Cost = current / base, time per request (wrk: 1 / req/s; one at a time: median latency). "
             f"Target for /v1/classify: at most {TARGET_COST:.2f}; /predict: unchanged (within noise).", "",
             "| scenario | " + " | ".join(f"round {n}: base / current ms (cost)" for n in rounds)
             + " | median cost | server CPU ms per request, cost per round (median) |",
             "| --- | " + " | ".join("---:" for _ in rounds) + " | ---: | ---: |"]
    for scenario in (s.name for s in SCENARIOS):
        time_costs = costs(figures, scenario, lambda f: f.ms_per_request)
        cpu_costs = costs(figures, scenario, lambda f: f.server_cpu_ms_per_request)
        cells = [f"{by_key[scenario, n, BASE].ms_per_request:.2f} / {by_key[scenario, n, CURRENT].ms_per_request:.2f}"
                 f" ({cost:.3f})" for n, cost in zip(rounds, time_costs, strict=True)]
        cpu = " / ".join(f"{cost:.3f}" for cost in cpu_costs)
        lines.append(f"| {scenario} | " + " | ".join(cells) + f" | **{statistics.median(time_costs):.3f}** | "
                     f"{cpu} ({statistics.median(cpu_costs):.3f}) |")
    lines += ["", "| round | side | load average (1 min) before start | rest of the machine, CPU cores (min-max) | "
              "p99 ms, one bean scenarios |", "| ---: | --- | ---: | ---: | --- |"]
    for number in rounds:
        for side in (BASE, CURRENT):
            own = [figure for figure in figures if figure.round == number and figure.side == side]
            others = [figure.other_cpu_cores for figure in own]
            p99 = ", ".join(f"{figure.p99_ms:.0f}" for figure in own if figure.beans == 1)
            lines.append(f"| {number} | {side} | {own[0].load_average:.2f} | {min(others):.2f}-{max(others):.2f} | "
                         f"{p99} |")
    return "\n".join(lines) + "\n"


def write_results(header: dict[str, str], options: Options, figures: list[Figure]) -> None:
    """Print the markdown report; write it and the figures as JSON under results/."""
    markdown = to_markdown(header, options, figures)
    print("\n" + markdown)
    (RESULTS / "classify-cost.md").write_text(markdown)
    document = {"header": header, "options": {**asdict(options), "data": str(options.data)},
                "figures": [{**asdict(figure), "ms_per_request": figure.ms_per_request} for figure in figures],
                "median_cost": {scenario.name: statistics.median(costs(figures, scenario.name,
                                                                        lambda f: f.ms_per_request))
                                for scenario in SCENARIOS}}
    (RESULTS / "classify-cost.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}/classify-cost.md, classify-cost.json")


if __name__ == "__main__":
    started = time.perf_counter()
    try:
        code = main()
    except KeyboardInterrupt:  # the `finally` blocks have run by now
        print("interrupted: every server started was stopped, every database created was dropped", file=sys.stderr)
        sys.exit(130)
    print(f"took {time.perf_counter() - started:.0f} s")
    sys.exit(code)
