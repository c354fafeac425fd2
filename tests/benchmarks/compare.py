"""Two commits' `/v1/classify`, served side by side and timed interleaved: what a change cost or bought.

    .venv/bin/python -m tests.benchmarks.compare --before ca7f9cf [--after HEAD] [--beans 1 100 1000 10000]

Checks each commit out (`git worktree`), trains one model for both into a throwaway BentoML home, serves both at
once on the embedded database, then sends the same store:false requests one at a time, alternating between the
two in random order, so that whatever else the machine does lands on both alike. Prints the median latency of
each and the change, per request size.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import httpx

from data.readers import read_dataset
from tests.benchmarks.processes import RunningServer, running_server
from tests.servers import BENTOML

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("DRYBEAN_DATA") or ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv")
READY_TIMEOUT_SECONDS = 120


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", default="HEAD", help="the commit under test (default: HEAD)")
    parser.add_argument("--beans", type=int, nargs="+", default=[1, 100, 1_000, 10_000], help="beans per request")
    parser.add_argument("--rounds", type=int, default=60, help="requests to each server per size (default: 60)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the dataset to train and draw beans from")
    return parser.parse_args(argv)


@contextmanager
def checkout(commit: str, parent: Path) -> Iterator[Path]:
    """A work tree of `commit` under `parent`, removed after."""
    tree = parent / commit.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), commit], cwd=ROOT, check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def serve(tree: Path, name: str, env: dict[str, str], logs: Path) -> AbstractContextManager[RunningServer]:
    """`bentoml serve` from a work tree, on its own embedded database and spool."""
    own = {**env, "DRYBEANS_SQLITE_PATH": str(logs / f"{name}.sqlite3"), "DRYBEANS_SPOOL_DIR": str(logs / name)}
    return running_server(name, [str(BENTOML), "serve", "--port", "{port}"], cwd=tree, env=own, probe="/readyz",
                          log_dir=logs, ready_timeout=READY_TIMEOUT_SECONDS)


def timed_post(client: httpx.Client, url: str, body: bytes) -> float:
    """Seconds for one request's full answer."""
    started = time.perf_counter()
    response = client.post(url, content=body, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    beans = read_dataset(options.data).features.to_dict("records")
    with tempfile.TemporaryDirectory(prefix="drybeans-compare-") as scratch, ExitStack() as stack:
        work = Path(scratch)
        env = {"BENTOML_HOME": str(work / "bentoml"), "BENTOML_DO_NOT_TRACK": "true", "DRYBEAN_DATA": str(options.data)}
        before = stack.enter_context(checkout(options.before, work))
        after = stack.enter_context(checkout(options.after, work))
        subprocess.run([sys.executable, "train.py", "--output", str(work / "outputs")], cwd=after,
                       env={**os.environ, **env}, check=True, capture_output=True)
        servers = {name: stack.enter_context(serve(tree, name, env, work))
                   for name, tree in (("before", before), ("after", after))}
        client = stack.enter_context(httpx.Client(timeout=120))
        print(f"/v1/classify, store false, median of {options.rounds} requests each, interleaved")
        print(f"{'beans':>7} {options.before:>12} {options.after:>12} {'change':>8}")
        for count in options.beans:
            body = httpx.Request("POST", "/", json={"beans": random.Random(count).choices(beans, k=count),
                                                    "store": False}).content
            seconds: dict[str, list[float]] = {name: [] for name in servers}
            for name in servers:  # warm-up: first requests pay for imports and caches
                timed_post(client, servers[name].url + "/v1/classify", body)
            for _ in range(options.rounds):
                for name in random.sample(list(servers), k=len(servers)):
                    seconds[name].append(timed_post(client, servers[name].url + "/v1/classify", body))
            old, new = (statistics.median(seconds[name]) * 1000 for name in ("before", "after"))
            print(f"{count:>7,} {old:>9.2f} ms {new:>9.2f} ms {new / old - 1:>+8.0%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
