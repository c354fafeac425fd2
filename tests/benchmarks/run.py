"""The benchmark harness (issue "Performance"): our service against MySQL, beside the tutorial and a minimal service.

    .venv/bin/python -m tests.benchmarks.run [--runs 3] [--duration 10]
                                             [--scenarios ours minimal tutorial profile v2 shadow]
                                             [--image drybeans:latest] [--mlserver-venv .venv-mlserver]

Each run trains a model into a throwaway BentoML home, then starts each server in turn (never two at once) against
its own throwaway MariaDB database, warms it up, and drives it with wrk (small requests, 32 connections) and httpx
(large requests, one at a time). Scenario v2 (issue #20) serves the run's model from ours (gRPC on) and from
MLServer 1.7 (v2_peers.py) in turn, and sends both the same V2 requests over REST JSON, REST binary and gRPC
(grpc_load.py). Scenario shadow (issue #21) trains a linear and an RBF challenger into the run's model store (last,
so that no other scenario loads them), serves the three models, and measures the champion's one bean store:true with
no shadow and with the linear one in alternation, then with the RBF one, changing the roles live through the
operator API (shadow.py). A target counts only when every run meets it: results/results.md opens with each target's
figure in every run and their median, followed by each run's full report; results.json holds the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import httpx
import numpy as np
import sklearn
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from data.readers import read_dataset
from tests.benchmarks import grpc_load, load, processes, pyspy, shadow, v2_bodies, v2_peers
from tests.benchmarks.report import (
    LINEAR_SHADOW,
    MINIMAL,
    MLSERVER,
    NO_SHADOW,
    ONE_BEAN,
    OURS,
    RBF_SHADOW,
    TUTORIAL,
    V2_BINARY,
    V2_GRPC,
    V2_JSON,
    V2_LARGE,
    V2_ONE,
    Results,
    Scenario,
    ShadowPhase,
    machine_header,
    summary,
    summary_markdown,
    v2_name,
)
from tests.benchmarks.report import to_json as results_json
from tests.benchmarks.report import to_markdown as results_markdown
from tests.servers import BENTOML, MySQLDatabase, free_port, mysql_database

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TUTORIAL_APP = HERE / "tutorial_app"
DEFAULT_DATA = Path(os.environ.get("DRYBEAN_DATA") or ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv")
SCENARIOS = ("ours", "minimal", "tutorial", "profile", "v2", "shadow")
BATCH_SIZES = (1_000, 10_000)
V2_LARGE_BEANS = 10_000
# The gRPC load as wrk's: one call in flight per connection (channel), the connections split over 2 driver processes.
GRPC_PROCESSES, GRPC_IN_FLIGHT = 2, 1
READY_TIMEOUT_SECONDS = 120
TRAIN_TIMEOUT_SECONDS = 600
TUTORIAL_FIT_TIMEOUT_SECONDS = 1800
ROWS_SETTLE_SECONDS = 10
# The shadow scenario's challengers (train.py's options) and its passes in order: no shadow and the linear one in
# alternation, so that drift over the run falls on both; then the RBF one (information, no target).
CHALLENGERS = {LINEAR_SHADOW: ("--C", "0.5"), RBF_SHADOW: ("--kernel", "rbf", "--C", "10")}
SHADOW_PASSES: tuple[tuple[str, float | None], ...] = (
    (NO_SHADOW, None), (LINEAR_SHADOW, 1.0), (NO_SHADOW, None), (LINEAR_SHADOW, 1.0),
    (RBF_SHADOW, 1.0), (RBF_SHADOW, 0.1))
PICK_WORKER_SECONDS = 1.0


@dataclass(frozen=True)
class Options:
    """What to run, and for how long."""

    runs: int
    duration: float
    warmup: float
    connections: int
    batch_requests: int
    scenarios: tuple[str, ...]
    data: Path
    image: str | None
    mlserver_venv: Path


@dataclass
class Bench:
    """The state one run shares: options, results so far, where logs go, the BentoML home with the model."""

    options: Options
    results: Results
    logs: Path
    bentoml_home: Path


def parse_args(argv: list[str] | None) -> Options:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="consecutive runs of everything (default: 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run (default: 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load per server (default: 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default: 32)")
    parser.add_argument("--batch-requests", type=int, default=5,
                        help="sequential requests per large-request scenario (default: 5)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="ours: one bean, 1,000 and 10,000 beans, cold start, memory; minimal and tutorial: "
                             "the baselines; profile: py-spy on one of our workers under store:true load "
                             "(default: all); v2: ours and MLServer 1.7 over V2 REST JSON, REST binary and gRPC; "
                             "shadow: what a linear shadow (and, for information, an RBF one) costs our champion's "
                             "one bean store:true. Training always runs: it makes the model the servers load.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset CSV (default: {DEFAULT_DATA})")
    parser.add_argument("--image", help="also report this Docker image's size (e.g. drybeans:latest)")
    parser.add_argument("--mlserver-venv", type=Path, default=v2_peers.DEFAULT_VENV,
                        help="the virtualenv MLServer runs from, for v2; created with pip when missing "
                             "(default: $DRYBEANS_BENCH_MLSERVER_VENV, else .venv-mlserver)")
    args = parser.parse_args(argv)
    return Options(args.runs, args.duration, args.warmup, args.connections, args.batch_requests,
                   tuple(args.scenarios), args.data, args.image, args.mlserver_venv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios `runs` times, print the report and write it under results/."""
    options = parse_args(argv)
    load.wrk_path()  # fail before any work when wrk is missing
    if "v2" in options.scenarios:
        v2_peers.mlserver_venv(options.mlserver_venv)  # likewise when MLServer cannot be installed
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that `finally` blocks stop servers and drop databases
    RESULTS.mkdir(exist_ok=True)
    runs = []
    for number in range(1, options.runs + 1):
        print(f"run {number} of {options.runs}", flush=True)
        runs.append(run_once(options))
    write_results(runs)
    return 0


def run_once(options: Options) -> Results:
    """Train, then measure every selected server in turn."""
    with tempfile.TemporaryDirectory(prefix="drybeans-bench-") as scratch:
        logs = RESULTS / "logs"
        logs.mkdir(exist_ok=True)
        settings: dict[str, object] = {"duration": f"{options.duration:g} s", "warm-up": f"{options.warmup:g} s",
                                       "wrk": f"-t1 -c{options.connections}",
                                       "large requests": f"{options.batch_requests} sequential each"}
        bench = Bench(options, Results(machine_header(), settings), logs, Path(scratch) / "bentoml")
        champion = train(bench, Path(scratch) / "train-output")
        if "ours" in options.scenarios or "profile" in options.scenarios:
            bench_ours(bench)
        if "minimal" in options.scenarios:
            bench_minimal(bench)
        if "tutorial" in options.scenarios:
            bench_tutorial(bench)
        if "v2" in options.scenarios:
            bench_v2(bench, Path(scratch))
        if "shadow" in options.scenarios:  # last: its challengers join the model store the others serve from
            bench_shadow(bench, champion, Path(scratch))
        if options.image:
            bench.results.image_mb = image_megabytes(options.image)
    return bench.results


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(128 + signal.SIGTERM)


@dataclass(frozen=True)
class Trained:
    """A model train.py saved: its tag, the script's wall time and what it printed."""

    tag: str
    seconds: float
    stdout: str


def train(bench: Bench, output: Path) -> str:
    """Run `python train.py` as a user would, into the run's BentoML home; record wall time and its fit line; the
    saved model's tag."""
    trained = run_train_py(bench, output, ())
    fit = re.search(r"^fit\s+([\d.]+) s", trained.stdout, re.MULTILINE)
    bench.results.training["train.py wall seconds"] = trained.seconds
    bench.results.training["train.py fit line"] = fit.group(0) if fit else "no fit line printed"
    return trained.tag


def run_train_py(bench: Bench, output: Path, arguments: tuple[str, ...]) -> Trained:
    """`python train.py <arguments>` into the run's BentoML home."""
    print(f"training: python train.py {' '.join(arguments)}".rstrip(), flush=True)
    env = {**os.environ, "DRYBEAN_DATA": str(bench.options.data), "BENTOML_HOME": str(bench.bentoml_home),
           "BENTOML_DO_NOT_TRACK": "true"}
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "train.py", "--output", str(output), *arguments], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=TRAIN_TIMEOUT_SECONDS, check=False)
    wall = time.perf_counter() - started
    saved = re.search(r"^saved (\S+)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or saved is None:
        raise RuntimeError(f"train.py {' '.join(arguments)} failed ({completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    return Trained(saved.group(1), wall, completed.stdout)


def bench_ours(bench: Bench) -> None:
    """Our service against MySQL: cold start, one bean at 32 connections, large requests, memory, profile."""
    with mysql_database() as database:
        migrate_schema(database)
        with serve_bentoml(bench, OURS, ["serve"], database) as server:
            measure_ours(bench, server, database)


def migrate_schema(database: MySQLDatabase) -> None:
    """Create the schema beforehand, as production does (a Job; docs/deployment.md): a cold start is a new
    server process, not the database's first use."""
    subprocess.run([sys.executable, "-m", "db.migrate"], cwd=ROOT, env={**os.environ, **database.env},
                   capture_output=True, text=True, timeout=READY_TIMEOUT_SECONDS, check=True)


def measure_ours(bench: Bench, server: processes.RunningServer, database: MySQLDatabase) -> None:
    """Everything measured on our running server."""
    engine = database.engine()
    try:
        bench.results.cold_start_seconds[OURS] = server.cold_start_seconds
        warm_up(bench, server, "/predict")
        if "ours" in bench.options.scenarios:
            for store in (False, True):
                measure_one_bean(bench, server, OURS, store=store, engine=engine)
            for beans in BATCH_SIZES:
                for store in (False, True):
                    measure_large_requests(bench, server, beans, store=store, engine=engine)
            record_memory(bench, server, OURS)
        if "profile" in bench.options.scenarios:
            profile_store_true(bench, server)
    finally:
        engine.dispose()


def bench_minimal(bench: Bench) -> None:
    """The minimal BentoML service (no database): one bean at 32 connections."""
    with serve_bentoml(bench, MINIMAL, ["serve", "tests.benchmarks.minimal_service:Minimal"], None) as server:
        bench.results.cold_start_seconds[MINIMAL] = server.cold_start_seconds
        warm_up(bench, server, "/predict")
        measure_one_bean(bench, server, MINIMAL, store=False, engine=None)
        record_memory(bench, server, MINIMAL)


def bench_tutorial(bench: Bench) -> None:
    """The tutorial's Flask app as written, under Flask's threaded server: one bean, store false then true."""
    if importlib.util.find_spec("flask") is None:
        raise RuntimeError("flask not found: .venv/bin/pip install -e '.[bench]' (or .venv/bin/pip install flask)")
    model_dir = tutorial_model(bench)
    command = [sys.executable, "-m", "flask", "--app", str(TUTORIAL_APP / "app.py"), "run", "--host", "127.0.0.1",
               "--port", "{port}"]
    with mysql_database() as database, processes.running_server(
            "tutorial", command, cwd=model_dir, env=database.env, probe="/", log_dir=bench.logs,
            ready_timeout=READY_TIMEOUT_SECONDS) as server:
        engine = database.engine()
        try:
            bench.results.cold_start_seconds[TUTORIAL] = server.cold_start_seconds
            warm_up(bench, server, "/predict")
            for store in (False, True):
                measure_one_bean(bench, server, TUTORIAL, store=store, engine=engine)
        finally:
            engine.dispose()


def bench_shadow(bench: Bench, champion: str, scratch: Path) -> None:
    """Issue #21: what a shadow costs the champion. Train the challengers, serve them beside the champion (the first
    of DRYBEANS_MODELS answers), and measure each pass of SHADOW_PASSES on the same server, the roles changed live."""
    challengers = {}
    for name, arguments in CHALLENGERS.items():
        trained = run_train_py(bench, scratch / f"train-{name.split()[0].lower()}", arguments)
        bench.results.training[f"train.py {' '.join(arguments)} wall seconds"] = trained.seconds
        challengers[name] = trained.tag
    bench.results.settings["shadow"] = (f"champion {champion}, " + ", ".join(
        f"{name} {tag} (train.py {' '.join(CHALLENGERS[name])})" for name, tag in challengers.items()))
    with mysql_database() as database:
        migrate_schema(database)
        settings = {"DRYBEANS_MODELS": ",".join((champion, *challengers.values())),
                    "DRYBEANS_SPOOL_DIR": str(scratch / "spool-shadow")}  # its own roles cache, too
        with serve_bentoml(bench, f"{OURS} (shadow)", ["serve"], database, settings) as server:
            engine = database.engine()
            try:
                warm_up(bench, server, "/predict")
                for number, (name, share) in enumerate(SHADOW_PASSES, start=1):
                    measure_shadow_pass(bench, server, engine, number, name, challengers.get(name), share)
            finally:
                engine.dispose()


def measure_shadow_pass(bench: Bench, server: processes.RunningServer, engine: Engine, number: int, name: str,
                        tag: str | None, share: float | None) -> None:
    """Put the shadow `tag` in force at `share` (None: no shadow), measure one bean store:true, and count what became
    of the second opinions once the shadow's queue has drained."""
    shadow.put_in_force(server.url, tag, share or 0.0)

    def fate() -> tuple[dict[str, int], Counter[str]]:
        return shadow.second_opinions(server.url), shadow.shadow_rows(engine)

    beans_before, rows_before = shadow.settled(fate)
    label = name if share is None else f"{name} {share}"
    measure_one_bean(bench, server, OURS, store=True, engine=engine, scenario=f"{ONE_BEAN}, pass {number}: {label}")
    beans_after, rows_after = shadow.settled(fate)
    rows = rows_after - rows_before
    bench.results.shadow_phases.append(ShadowPhase(
        shadow=name, share=share, scenario=bench.results.scenarios[-1],
        beans={result: beans_after[result] - beans_before[result] for result in beans_after},
        rows_recorded=rows[tag] if tag is not None else rows.total()))


@dataclass(frozen=True)
class V2Server:
    """A server under the V2 scenarios: its name in the report, its REST server, its gRPC address."""

    name: str
    rest: processes.RunningServer
    grpc_target: str


def bench_v2(bench: Bench, scratch: Path) -> None:
    """Issue #20: ours (store:false, and store:true beside it) then MLServer 1.7, the same V2 requests to each."""
    versions = v2_peers.mlserver_venv(bench.options.mlserver_venv)
    channels = max(1, bench.options.connections // (GRPC_PROCESSES * GRPC_IN_FLIGHT))
    bench.results.settings["gRPC load"] = (f"{GRPC_PROCESSES} processes x {channels} channels x {GRPC_IN_FLIGHT} "
                                           "calls in flight")
    bench.results.settings[MLSERVER] = (", ".join(f"{name} {version}" for name, version in versions.items())
                                        + f", {v2_peers.WORKERS} parallel workers; answers `predict` (ours: "
                                        "label, scores, probabilities)")
    large = sample_beans(bench.options.data, V2_LARGE_BEANS)
    labels: dict[str, list[str]] = {}
    grpc_port = free_port()
    with mysql_database() as database:
        migrate_schema(database)
        with serve_bentoml(bench, OURS, ["serve"], database, {"DRYBEANS_GRPC_PORT": str(grpc_port)}) as server:
            engine = database.engine()
            try:
                ours = V2Server(OURS, server, f"127.0.0.1:{grpc_port}")
                measure_v2(bench, ours, large, stores=(False, True), engine=engine)
                labels[OURS] = v2_labels(ours, large)
            finally:
                engine.dispose()
    with v2_peers.running_mlserver(bench.options.mlserver_venv, bench.bentoml_home, scratch, log_dir=bench.logs,
                                   ready_timeout=READY_TIMEOUT_SECONDS) as mlserver:
        bench.results.cold_start_seconds[MLSERVER] = mlserver.rest.cold_start_seconds
        peer = V2Server(MLSERVER, mlserver.rest, mlserver.grpc_target)
        measure_v2(bench, peer, large, stores=(False,), engine=None)
        labels[MLSERVER] = v2_labels(peer, large)
    differing = sum(a != b for a, b in zip(labels[OURS], labels[MLSERVER], strict=True))
    bench.results.notes[f"labels, {V2_LARGE_BEANS:,} beans"] = (
        f"ours and {MLSERVER} differ on {differing:,} of {len(large):,} beans"
        + (" (the same pipeline)" if not differing else " **(not the same model?)**"))


def measure_v2(bench: Bench, server: V2Server, large: list[list[float]], *, stores: tuple[bool, ...],
               engine: Engine | None) -> None:
    """Warm up, then one bean @connections and `large` one request at a time, over each transport and `store`."""
    load.run_wrk(server.rest.url + v2_bodies.REST_PATH, v2_bodies.json_body([load.EXAMPLE_BEAN], store=False),
                 connections=bench.options.connections, seconds=bench.options.warmup)
    with suppress(grpc.RpcError):  # a refusal is reported by the gRPC scenario itself
        grpc_load.run_sequential(server.grpc_target, v2_bodies.grpc_request([load.EXAMPLE_BEAN], store=False),
                                 requests=100)
    for rows in ([load.EXAMPLE_BEAN], large):
        for store in stores:
            for transport in (V2_JSON, V2_BINARY, V2_GRPC):
                measure_v2_scenario(bench, server, transport, rows, store=store, engine=engine)


def measure_v2_scenario(bench: Bench, server: V2Server, transport: str, rows: list[list[float]], *, store: bool,
                        engine: Engine | None) -> None:
    """One V2 scenario: one request first (a refusal is noted, not measured), then the load."""
    one = len(rows) == 1
    name = v2_name(transport, V2_ONE if one else V2_LARGE)
    url, options = server.rest.url + v2_bodies.REST_PATH, bench.options
    drive: Callable[[], load.LoadResult]
    if transport == V2_GRPC:
        request = v2_bodies.grpc_request(rows, store=store)
        refusal = grpc_refusal(server.grpc_target, request)
        channels = max(1, options.connections // (GRPC_PROCESSES * GRPC_IN_FLIGHT))

        def drive() -> load.LoadResult:
            if one:
                return grpc_load.run_load(server.grpc_target, request, processes=GRPC_PROCESSES, channels=channels,
                                          in_flight=GRPC_IN_FLIGHT, seconds=options.duration)
            return grpc_load.run_sequential(server.grpc_target, request, requests=options.batch_requests)
    else:
        if transport == V2_JSON:
            body: str | bytes = v2_bodies.json_body(rows, store=store)
            headers = dict(load.JSON_HEADERS)
        else:
            binary = v2_bodies.binary_body(rows, store=store)
            body, headers = binary.body, binary.headers
        refusal = rest_refusal(url, body, headers)

        def drive() -> load.LoadResult:
            if one:
                return load.run_wrk(url, body, connections=options.connections, seconds=options.duration,
                                    headers=headers)
            return load.run_sequential(url, body, requests=options.batch_requests, headers=headers)
    if refusal:
        print(f"  {server.name}: {name}, store {str(store).lower()}: refused, not measured ({refusal})", flush=True)
        bench.results.notes[f"{server.name}, {name}, store {str(store).lower()}"] = f"not measured: refused ({refusal})"
        return
    record_scenario(bench, server.rest, server.name, name, store, len(rows), options.connections if one else 1,
                    engine, drive)


def rest_refusal(url: str, body: str | bytes, headers: dict[str, str]) -> str | None:
    """None when the server answers the request 2xx; otherwise its status and what it said."""
    answer = httpx.post(url, content=body, headers=headers, timeout=120)
    return None if answer.is_success else _one_line(f"HTTP {answer.status_code}: {answer.text[:300]}")


def grpc_refusal(target: str, request: bytes) -> str | None:
    """None when the server answers the call OK; otherwise its status and what it said."""
    try:
        grpc_load.call_once(target, request)
    except grpc.RpcError as error:
        return _one_line(f"{error.code().name}: {(error.details() or '')[:300]}")  # a call's error is a grpc.Call
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def v2_labels(server: V2Server, rows: list[list[float]]) -> list[str]:
    """The labels `server` answers for `rows` over V2 REST JSON."""
    answer = httpx.post(server.rest.url + v2_bodies.REST_PATH, content=v2_bodies.json_body(rows, store=False),
                        headers=load.JSON_HEADERS, timeout=120)
    answer.raise_for_status()
    return v2_bodies.json_labels(answer.json())


@contextmanager
def serve_bentoml(bench: Bench, name: str, arguments: list[str], database: MySQLDatabase | None,
                  extra_env: dict[str, str] | None = None) -> Iterator[processes.RunningServer]:
    """`bentoml <arguments>` from the project root, on the run's model store and `database` (if any)."""
    env = {"BENTOML_HOME": str(bench.bentoml_home), "BENTOML_DO_NOT_TRACK": "true", "DATABASE_URL": "",
           **(database.env if database else {}), **(extra_env or {})}
    command = [str(BENTOML), *arguments, "--host", "127.0.0.1", "--port", "{port}"]
    print(f"starting {name}", flush=True)
    with processes.running_server(name.split()[0], command, cwd=ROOT, env=env, probe="/readyz", log_dir=bench.logs,
                                  ready_timeout=READY_TIMEOUT_SECONDS) as server:
        yield server


def tutorial_model(bench: Bench) -> Path:
    """A directory holding the tutorial's pickle `DryBeanSVM`, fitted as the tutorial did; cached under results/."""
    directory = RESULTS / "tutorial-model" / f"sklearn-{sklearn.__version__}"
    pickle_path = directory / "DryBeanSVM"
    fit_record = directory / "fit.json"
    if not pickle_path.exists():
        print("fitting the tutorial's unscaled SVC once (about a minute; cached under results/)", flush=True)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / "DryBeanSVM.partial"
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, str(TUTORIAL_APP / "train_model.py"), str(bench.options.data),
                                    str(partial)], capture_output=True, text=True,
                                   timeout=TUTORIAL_FIT_TIMEOUT_SECONDS, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"the tutorial's training failed:\n{completed.stderr[-3000:]}")
        fit_record.write_text(json.dumps({"seconds": time.perf_counter() - started,
                                          "printed": completed.stdout.strip()}))
        partial.rename(pickle_path)
    fitted = json.loads(fit_record.read_text())
    bench.results.training["tutorial training script, wall seconds (cached run)"] = float(fitted["seconds"])
    bench.results.training["tutorial training script printed"] = fitted["printed"]
    return directory


def warm_up(bench: Bench, server: processes.RunningServer, path: str) -> None:
    """A short store:false load, so that measurements see a warm server."""
    load.run_wrk(server.url + path, load.tutorial_body([load.EXAMPLE_BEAN], store=False),
                 connections=bench.options.connections, seconds=bench.options.warmup)


def measure_one_bean(bench: Bench, server: processes.RunningServer, name: str, *, store: bool,
                     engine: Engine | None, scenario: str = ONE_BEAN) -> None:
    """One bean per request from `connections` wrk connections for `duration` seconds."""
    body = load.tutorial_body([load.EXAMPLE_BEAN], store=store)
    options = bench.options

    def drive() -> load.LoadResult:
        return load.run_wrk(server.url + "/predict", body, connections=options.connections, seconds=options.duration)

    record_scenario(bench, server, name, scenario, store, 1, options.connections, engine, drive)


def measure_large_requests(bench: Bench, server: processes.RunningServer, beans: int, *, store: bool,
                           engine: Engine) -> None:
    """`batch_requests` sequential requests of `beans` real beans each (one unmeasured request first)."""
    body = load.tutorial_body(sample_beans(bench.options.data, beans), store=store)
    url = server.url + "/predict"
    load.run_sequential(url, body, requests=1)

    def drive() -> load.LoadResult:
        return load.run_sequential(url, body, requests=bench.options.batch_requests)

    record_scenario(bench, server, OURS, f"{beans:,} beans", store, beans, 1, engine, drive)


def record_scenario(bench: Bench, server: processes.RunningServer, server_name: str, name: str, store: bool,
                    beans: int, connections: int, engine: Engine | None, drive: Callable[[], load.LoadResult]) -> None:
    """Run `drive` while counting CPU time (server, each worker, database, machine) and rows stored; keep it."""
    print(f"  {server_name}: {name}, store {str(store).lower()}", flush=True)
    rows_before = count_rows(engine)
    groups = {"server": processes.server_pids(server), "database": processes.database_pids(),
              **{str(pid): [pid] for pid in processes.worker_pids(server)}}
    cpu_before = {group: processes.cpu_seconds(pids) for group, pids in groups.items()}
    machine_before = processes.machine_busy_cpu_seconds()
    client_before = processes.own_cpu_seconds()
    result = drive()
    cores = {group: (processes.cpu_seconds(pids) - cpu_before[group]) / result.seconds
             for group, pids in groups.items()}
    machine_cores = (processes.machine_busy_cpu_seconds() - machine_before) / result.seconds
    client_cores = (processes.own_cpu_seconds() - client_before) / result.seconds
    rows = settled_row_count(engine) - rows_before
    bench.results.scenarios.append(Scenario(
        server=server_name, name=name, store=store, beans_per_request=beans, connections=connections,
        requests=result.requests, seconds=result.seconds, ok=result.ok, errors=result.errors, p50_ms=result.p50_ms,
        p99_ms=result.p99_ms, rows_stored=rows, server_cpu_cores=cores["server"], database_cpu_cores=cores["database"],
        client_cpu_cores=client_cores,
        other_cpu_cores=machine_cores - cores["server"] - cores["database"] - client_cores,
        worker_cpu_cores=tuple(value for group, value in cores.items() if group not in ("server", "database"))))


def count_rows(engine: Engine | None) -> int:
    """Rows in the `drybeans` table (0 before the table exists, or without a database)."""
    if engine is None:
        return 0
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT COUNT(*) FROM drybeans")).scalar_one())
    except ProgrammingError:  # the tutorial creates its table on its first store:true request
        return 0


def settled_row_count(engine: Engine | None) -> int:
    """The row count once requests still in flight when the load stopped have been committed (bounded wait)."""
    deadline = time.monotonic() + ROWS_SETTLE_SECONDS
    previous = count_rows(engine)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = count_rows(engine)
        if current == previous:
            return current
        previous = current
    return previous


def sample_beans(data: Path, count: int) -> list[list[float]]:
    """`count` real beans from the dataset, drawn with replacement (fixed seed)."""
    features = read_dataset(data).features.to_numpy()
    picks = np.random.default_rng(17).integers(0, len(features), size=count)
    return features[picks].tolist()


def record_memory(bench: Bench, server: processes.RunningServer, name: str) -> None:
    """RSS and PSS of each worker of a BentoML server, after its load."""
    workers = [processes.worker_memory(pid) for pid in processes.worker_pids(server)]
    bench.results.memory_mib[name] = [{"pid": w.pid, "rss_mib": w.rss_mib, "pss_mib": w.pss_mib} for w in workers]


def profile_store_true(bench: Bench, server: processes.RunningServer) -> None:
    """Two extra store:true one-bean runs with py-spy on our busiest worker: Python frames, then C frames too."""
    sections = [profile_pass(bench, server, native=False), profile_pass(bench, server, native=True)]
    (RESULTS / "profile.md").write_text("\n\n".join(markdown for markdown, _ in sections) + "\n")
    bench.results.profile = {"python": sections[0][1], "native": sections[1][1]}


def profile_pass(bench: Bench, server: processes.RunningServer, *, native: bool) -> tuple[str, dict[str, object]]:
    """One wrk run of one bean store:true with py-spy on the busiest worker; its markdown and JSON summary."""
    workers = processes.worker_pids(server)
    if not workers:
        raise RuntimeError(f"no BentoML worker found under pid {server.process.pid}")
    seconds = bench.options.duration
    kind = "native" if native else "python"
    collapsed = RESULTS / f"profile-store-true-{kind}.txt"
    wrk = load.start_wrk(server.url + "/predict", load.tutorial_body([load.EXAMPLE_BEAN], store=True),
                         connections=bench.options.connections, seconds=seconds)
    try:
        busiest, split = busiest_worker(workers)
        print(f"  {OURS}: py-spy ({kind} frames) on worker {busiest} under one bean store:true "
              f"(worker CPU cores {split})", flush=True)
        recorder = pyspy.start_recording(busiest, max(1.0, seconds - PICK_WORKER_SECONDS - 1), collapsed,
                                         native=native)
        pyspy.finish_recording(recorder, seconds)
    finally:
        result = load.finish_wrk(wrk, seconds)
    threads = pyspy.summarise(collapsed)
    title = (f"py-spy, {kind} frames{' (process paused per sample)' if native else ''}: the busiest {OURS} worker "
             f"(pid {busiest}; worker CPU cores in the first second: {split}), one bean store:true "
             f"@{bench.options.connections}: {result.requests_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms "
             "while sampled")
    summary: dict[str, object] = {"title": title, "collapsed_stacks": str(collapsed.relative_to(ROOT)),
                                  "threads": pyspy.to_json(threads)}
    return pyspy.to_markdown(threads, title, top=12 if native else 15), summary


def busiest_worker(workers: list[int]) -> tuple[int, str]:
    """The worker that used the most CPU over the next second, and every worker's cores in that second."""
    before = {pid: processes.cpu_seconds([pid]) for pid in workers}
    time.sleep(PICK_WORKER_SECONDS)
    cores = {pid: (processes.cpu_seconds([pid]) - before[pid]) / PICK_WORKER_SECONDS for pid in workers}
    return max(cores, key=lambda pid: cores[pid]), " + ".join(f"{value:.2f}" for value in cores.values())


def image_megabytes(image: str) -> float:
    """The size of a Docker image, in MB (10^6 bytes, as `docker images` shows it)."""
    inspected = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True,
                               text=True, timeout=60, check=True)
    return int(inspected.stdout.strip()) / 1e6


def write_results(runs: list[Results]) -> None:
    """Print the markdown report; write it and the JSON under results/."""
    markdown = "\n".join([summary_markdown(runs), *(results_markdown(run, title=f"Run {number}")
                                                   for number, run in enumerate(runs, start=1))])
    print("\n" + markdown)
    (RESULTS / "results.md").write_text(markdown)
    document = {"summary": [{"target": description, "runs": [t.value for t in found], "median": median,
                             "met_in_every_run": every} for description, found, median, every in summary(runs)],
                "runs": [results_json(run) for run in runs]}
    (RESULTS / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    extra = " and profile.md" if any(run.profile for run in runs) else ""
    print(f"written: {RESULTS.relative_to(ROOT)}/results.md, results.json{extra}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the `finally` blocks have run by now
        print("interrupted: every server started was stopped, every database created was dropped", file=sys.stderr)
        sys.exit(130)
