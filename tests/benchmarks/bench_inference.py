"""Micro-benchmark: `Pipeline.predict` against the compiled linear SVC, side by side, on the real dataset.

    .venv/bin/python tests/benchmarks/bench_inference.py [--data PATH] [--seconds 0.3]

Trains the served model on the tutorial's split, then times both predictors on 1, 1,000, 10,000 and 100,000
rows (drawn with replacement from the dataset) and prints a markdown table. Exits non-zero if any label differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sklearn
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's modules live at the root

from data.readers import read_dataset  # noqa: E402
from model.compiled_svc import CompiledLinearSVC  # noqa: E402

SIZES = (1, 1_000, 10_000, 100_000)
DEFAULT_DATA = Path(os.environ.get("DRYBEAN_DATA", ROOT.parent / "shared" / "data" / "Dry_Bean_Dataset.csv"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset file (default: {DEFAULT_DATA})")
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per measurement (default: 0.3)")
    return parser.parse_args(argv)


def seconds_per_call(function: Callable[[], object], budget: float, repeats: int = 5) -> float:
    """Best over `repeats` of the mean time of one call, each repeat running for about `budget` seconds."""
    # The minimum, as timeit advises: other processes only ever add time, never remove it.
    function()  # warm-up: caches, lazy imports, BLAS thread pool
    start = time.perf_counter()
    function()
    loops = max(1, int(budget / max(time.perf_counter() - start, 1e-9)))
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            function()
        timings.append((time.perf_counter() - start) / loops)
    return min(timings)


def milliseconds(seconds: float) -> str:
    """A duration for the table."""
    return f"{seconds * 1e3:.3f}" if seconds < 1e-1 else f"{seconds * 1e3:.1f}"


def main(argv: list[str] | None = None) -> int:
    """Train, time, print the table; 1 when labels differ anywhere."""
    args = parse_args(argv)
    dataset = read_dataset(args.data)
    x, y = dataset.features.to_numpy(dtype=np.float64), dataset.labels.to_numpy()
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=17)
    pipeline = Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="linear"))]).fit(x_train, y_train)
    compiled = CompiledLinearSVC.from_pipeline(pipeline)
    rng = np.random.default_rng(0)

    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, {os.cpu_count()} CPUs, "
          f"{pipeline[-1].support_vectors_.shape[0]} support vectors; times in ms per call (best of 5)\n")
    print("| rows | `Pipeline.predict` | compiled `predict` | speedup "
          "| predict + decision_function | compiled `predict_with_scores` | speedup | labels equal |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    all_equal = True
    for n in SIZES:
        rows = x[rng.choice(len(x), size=n, replace=True)]
        reference = seconds_per_call(lambda rows=rows: pipeline.predict(rows), args.seconds)
        fast = seconds_per_call(lambda rows=rows: compiled.predict(rows), args.seconds)
        reference_both = seconds_per_call(
            lambda rows=rows: (pipeline.predict(rows), pipeline.decision_function(rows)), args.seconds)
        fast_both = seconds_per_call(lambda rows=rows: compiled.predict_with_scores(rows), args.seconds)
        labels, scores = compiled.predict_with_scores(rows)
        equal = bool(np.array_equal(labels, pipeline.predict(rows))
                     and np.array_equal(compiled.predict(rows), labels)
                     and np.allclose(scores, pipeline.decision_function(rows), rtol=1e-9, atol=1e-9))
        all_equal &= equal
        print(f"| {n:,} | {milliseconds(reference)} | {milliseconds(fast)} | {reference / fast:.1f}x "
              f"| {milliseconds(reference_both)} | {milliseconds(fast_both)} | {reference_both / fast_both:.1f}x "
              f"| {'yes' if equal else '**NO**'} |")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
