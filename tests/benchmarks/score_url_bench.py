"""score.py --url against MLServer 1.7's `mlserver infer`, side by side in one run (issue #23's second target).

    BENTOML_HOME=... .venv/bin/python -m tests.benchmarks.score_url_bench [--rows 200000] [--repeat 3]
                                                                         [--mlserver-workers 3] [--mlserver-venv DIR]
    .venv/bin/python -m tests.benchmarks.score_url_bench --train    # a fresh model in a throwaway BentoML home

The same N beans (the shared dataset repeated) go to each as its users hand them over: a CSV to `score.py CSV
--output OUT.parquet --url URL` (binary V2, 10,000 beans a request, 3 in flight, store false), and to `mlserver infer`
(deprecated in 1.7) a file of V2 requests, one JSON line of 10,000 beans each, which it sends over REST JSON with
--workers requests in flight and --batch-size 1 (one line, one request). Both servers run throughout, with two
workers each: ours from the repository root against a throwaway MariaDB database (nothing written at store false),
MLServer's scikit-learn runtime on the same trained pipeline (v2_peers.py). After one warm-up each, the commands
alternate, ours first; each is timed whole (its process's wall time) and by its own clock (score.py's summary line,
mlserver infer's "Time taken"). Every run's outputs are checked: N rows each, and MLServer's `predict` labels equal
to our label column. Exit code 1 when a run fails or the outputs disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch.remote import IN_FLIGHT, REQUEST_BEANS
from batch.scoring import LABEL
from data.schema import FEATURES
from tests.benchmarks import v2_peers
from tests.benchmarks.score_bench import DATASET, ROOT, Run, repeated_csv, run
from tests.benchmarks.v2_bodies import INPUT, MODEL, json_labels
from tests.servers import bentoml_serve, mysql_database

# score.py's summary line: its seconds are rounded to 0.1 s, its rate is not (rows / rate: the seconds to ~1e-5).
SUMMARY_RATE = re.compile(r"([0-9,]+) rows in [0-9.]+ s \(([0-9,]+) rows/s\)")
# mlserver infer's requests in flight: as score.py's, and its fastest here (200,000 beans, median of 4 alternated:
# 1 worker 7.7 s, 2 5.5 s, 3 4.7 s, 4 4.8 s, its default 10 5.1 s). Its --binary-data is refused by MLServer 1.7's
# REST server (JSON decode error), and --batch-size above 1 would merge lines into larger requests.
MLSERVER_WORKERS = IN_FLIGHT
MLSERVER_SECONDS = re.compile(r"Time taken: ([0-9.]+) seconds")
MLSERVER_FAILURE = re.compile(r"exception|failed to|error", re.IGNORECASE)
READY_TIMEOUT_SECONDS = 120
TRAIN_TIMEOUT_SECONDS = 600
WARM_UP_BEANS = 2 * REQUEST_BEANS  # a request for each of a server's two workers
NO_MODEL_STORE = ("set BENTOML_HOME to a model store holding drybean_svc (python train.py saves one), or pass --train "
                  "to train one into a throwaway home")


class BenchFailure(RuntimeError):
    """A run failed or its output is wrong; the message says which and how."""


@dataclass(frozen=True)
class Contender:
    """One side of the comparison: its name in the table and its runs."""

    name: str
    runs: list[Run]

    def median(self, field: str) -> float:
        return statistics.median(getattr(one, field) for one in self.runs)


def main() -> int:
    parser = _parser()
    args = parser.parse_args()
    if not args.train and not os.environ.get("BENTOML_HOME"):
        parser.error(NO_MODEL_STORE)
    try:
        print(report(args, *compare(args)))
    except BenchFailure as exc:
        print(f"score_url_bench: {exc}", file=sys.stderr)
        return 1
    return 0


def compare(args: argparse.Namespace) -> tuple[Contender, Contender, tuple[float, ...], tuple[float, ...]]:
    """Both contenders' runs, alternated, with the load average before and after."""
    versions = v2_peers.mlserver_venv(args.mlserver_venv)
    with tempfile.TemporaryDirectory(prefix="score-url-bench-") as folder:
        scratch = Path(folder)
        home = model_home(args, scratch)
        beans = repeated_csv(scratch / "beans.csv", args.rows)
        requests = mlserver_requests(beans, scratch / "requests.jsonl")
        warm_up = repeated_csv(scratch / "warm-up.csv", WARM_UP_BEANS)
        warm_up_requests = mlserver_requests(warm_up, scratch / "warm-up.jsonl")
        logs = scratch / "logs"
        logs.mkdir()
        ours = Contender(f"score.py --url (binary V2, {IN_FLIGHT} in flight)", [])
        peer = Contender(f"mlserver infer (MLServer {versions['mlserver']}, REST JSON, {args.mlserver_workers} "
                         "workers)", [])
        with mysql_database() as database, \
                bentoml_serve({"BENTOML_HOME": str(home), "DATABASE_URL": "", **database.env}, logs,
                              ready_timeout=READY_TIMEOUT_SECONDS) as service, \
                v2_peers.running_mlserver(args.mlserver_venv, home, scratch, log_dir=logs,
                                          ready_timeout=READY_TIMEOUT_SECONDS) as mlserver:
            def run_ours(source: Path) -> Run:
                return score_url(source, scratch / "ours.parquet", service.url)

            def run_peer(source: Path) -> Run:
                return mlserver_infer(args.mlserver_venv, mlserver.rest.url, source, scratch / "mlserver.jsonl",
                                      args.mlserver_workers)

            load_before = os.getloadavg()
            print("warming up both servers", flush=True)
            run_ours(warm_up)
            run_peer(warm_up_requests)
            for number in range(1, args.repeat + 1):  # alternated, so that both meet the same machine
                ours.runs.append(run_ours(beans))
                peer.runs.append(run_peer(requests))
                check_same_labels(scratch / "ours.parquet", scratch / "mlserver.jsonl", args.rows)
                print(f"run {number}: ours {ours.runs[-1].wall:.2f} s, mlserver infer {peer.runs[-1].wall:.2f} s, "
                      f"{args.rows:,} labels equal", flush=True)
    return ours, peer, load_before, os.getloadavg()


def model_home(args: argparse.Namespace, scratch: Path) -> Path:
    """The BentoML home the servers load drybean_svc from: a fresh one trained here with --train, else BENTOML_HOME."""
    if not args.train:
        return Path(os.environ["BENTOML_HOME"])
    home = scratch / "bentoml"
    print("training: python train.py", flush=True)
    trained = subprocess.run([sys.executable, "train.py", "--output", str(scratch / "train-output")], cwd=ROOT,
                             env={**os.environ, "DRYBEAN_DATA": str(DATASET), "BENTOML_HOME": str(home),
                                  "BENTOML_DO_NOT_TRACK": "true"},
                             capture_output=True, text=True, timeout=TRAIN_TIMEOUT_SECONDS, check=False)
    if trained.returncode != 0:
        raise BenchFailure(f"train.py failed ({trained.returncode}):\n{trained.stderr[-3000:]}")
    return home


def mlserver_requests(source: Path, path: Path) -> Path:
    """`mlserver infer`'s input file: one V2 request per REQUEST_BEANS beans of `source`, each one [n, 16] FP64
    tensor in JSON. The CSV is parsed as score.py parses it (pandas' default), so both get the same doubles."""
    features = pd.read_csv(source)[list(FEATURES)].to_numpy(dtype=np.float64)
    with path.open("w") as out:
        for start in range(0, len(features), REQUEST_BEANS):
            rows = features[start:start + REQUEST_BEANS]
            out.write(json.dumps({"id": f"beans-{start}", "inputs": [
                {"name": INPUT, "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}))
            out.write("\n")
    return path


def score_url(source: Path, output: Path, url: str) -> Run:
    """`python score.py SOURCE --output OUTPUT --url URL` (store false); its work time from its summary line."""
    def seconds(_out: str, err: str) -> float:
        found = SUMMARY_RATE.search(err)
        if found is None:
            raise BenchFailure(f"score.py printed no summary line:\n{err[-2000:]}")
        rows, rate = (int(number.replace(",", "")) for number in found.groups())
        return rows / rate

    return _checked_run([sys.executable, str(ROOT / "score.py"), str(source), "--output", str(output), "--url", url],
                        seconds)


def mlserver_infer(venv: Path, url: str, requests: Path, output: Path, workers: int) -> Run:
    """`mlserver infer` on the file of requests, one request per line; its work time from its "Time taken" line.
    It exits 0 whatever its requests met, so any exception or failure it logs fails the run."""
    def seconds(out: str, err: str) -> float:
        logged = out + err  # its log goes to stdout
        found = MLSERVER_SECONDS.search(logged)
        if found is None or MLSERVER_FAILURE.search(logged):
            raise BenchFailure(f"mlserver infer failed:\n{logged[-2000:]}")
        return float(found.group(1))

    address = url.removeprefix("http://")  # it wants host:port
    return _checked_run([str(venv / "bin" / "mlserver"), "infer", "--url", address, "--model-name", MODEL,
                         "--input-data-path", str(requests), "--output-data-path", str(output),
                         "--workers", str(workers), "--batch-size", "1", "--transport", "rest"], seconds)


def _checked_run(command: list[str], work_seconds: Callable[[str, str], float]) -> Run:
    try:
        return run(command, work_seconds)
    except RuntimeError as exc:  # a non-zero exit
        raise BenchFailure(str(exc)) from None


def check_same_labels(ours: Path, mlserver: Path, rows: int) -> None:
    """Both outputs hold `rows` beans and the same label for each; BenchFailure saying where they differ."""
    our_labels = pd.read_parquet(ours, columns=[LABEL])[LABEL].astype(str).tolist()
    answers = [json.loads(line) for line in mlserver.read_text().splitlines()]
    failed = [answer for answer in answers if "error" in answer]
    if failed:
        raise BenchFailure(f"mlserver infer wrote {len(failed)} failed requests, the first: {failed[0]['error']}")
    answers.sort(key=lambda answer: answer["parameters"]["batch_index"])  # written as they complete
    their_labels = [label for answer in answers for label in json_labels(answer)]
    if len(our_labels) != rows or len(their_labels) != rows:
        raise BenchFailure(f"{rows:,} beans sent: score.py wrote {len(our_labels):,} rows, mlserver infer "
                           f"{len(their_labels):,} labels")
    differing = [index for index, (a, b) in enumerate(zip(our_labels, their_labels, strict=True)) if a != b]
    if differing:
        first = differing[0]
        raise BenchFailure(f"labels differ on {len(differing):,} of {rows:,} beans, the first at row {first}: ours "
                           f"{our_labels[first]}, MLServer's {their_labels[first]}")


def report(args: argparse.Namespace, ours: Contender, peer: Contender, load_before: tuple[float, ...],
           load_after: tuple[float, ...]) -> str:
    """The markdown table: each contender's median and runs, whole process and work alone, and ours / MLServer."""
    def rate(seconds: float) -> str:
        return f"{args.rows / seconds:,.0f}"

    def cells(contender: Contender, field: str) -> str:
        median = contender.median(field)
        each = ", ".join(f"{getattr(one, field):.2f}" for one in contender.runs)
        return f"{median:.2f} | {rate(median)} | {each}"

    def ratios(field: str) -> str:
        each = ", ".join(f"{getattr(b, field) / getattr(a, field):.2f}" for a, b in zip(ours.runs, peer.runs,
                                                                                        strict=True))
        return f"{peer.median(field) / ours.median(field):.2f}x ({each})"

    requests = -(-args.rows // REQUEST_BEANS)
    lines = [
        f"\n{args.rows:,} beans in {requests} requests of up to {REQUEST_BEANS:,}, {args.repeat} runs each, "
        f"alternated; load average (1, 5, 15 min) before {_load(load_before)}, after {_load(load_after)}\n",
        "| | whole process: median (s) | beans/s | each run (s) | work alone: median (s) | beans/s | each run (s) "
        "| peak RSS (MB) |",
        "|---|---:|---:|---|---:|---:|---|---:|",
        *(f"| {contender.name} | {cells(contender, 'wall')} | {cells(contender, 'work')} | "
          f"{contender.median('peak_mb'):.0f} |" for contender in (ours, peer)),
        f"\nours / mlserver infer in beans/s (median; each run): whole process {ratios('wall')}, work alone "
        f"{ratios('work')} (target >= 2x)",
    ]
    return "\n".join(lines)


def _load(averages: tuple[float, ...]) -> str:
    return "/".join(f"{value:.2f}" for value in averages)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=_positive, default=200_000, help="beans scored by each (the dataset repeated)")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs of each, alternated")
    parser.add_argument("--train", action="store_true", help="train drybean_svc into a throwaway BentoML home "
                        "(default: the model store at BENTOML_HOME)")
    parser.add_argument("--mlserver-venv", type=Path, default=v2_peers.DEFAULT_VENV,
                        help="MLServer 1.7's virtualenv (created on first use)")
    parser.add_argument("--mlserver-workers", type=_positive, default=MLSERVER_WORKERS,
                        help=f"mlserver infer's --workers: its requests in flight (default {MLSERVER_WORKERS}, as "
                             "score.py's)")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


if __name__ == "__main__":
    sys.exit(main())
