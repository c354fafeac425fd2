"""Score a file of beans: every input column kept, plus each bean's label, probabilities and doubts.

    python score.py INPUT --output OUTPUT [--model TAG] [--store] [--url URL] [--coverage 0.95] [--chunk N]

INPUT is .csv (as the dataset ships it), .parquet, .jsonl, or the UCI .arff or .zip; OUTPUT's extension (.csv,
.parquet or .jsonl) chooses its format. Rows that cannot be scored (a missing, non-numeric, infinite or out-of-range
feature) go to OUTPUT's rejects file, `<stem>.rejects.<ext>`, with the reason the service would give. The file is
read in chunks of --chunk rows, so memory stays flat whatever its size. A progress bar shows on a terminal; one
summary line is printed in any case.

--store records the predictions in the service's database (the same writer and spool as the service: exactly once,
spooled while the database is down). --url sends the beans to a running service over V2 instead of loading the
model; --store is then the requests' `store` parameter.

Exit codes:
    0  every row scored
    1  some rows refused (the rejects file lists them and why)
    2  usage, an unreadable input or a wrong header (nothing written: a partial output is removed)
    3  the model is not in the model store, or cannot be loaded
    4  --store: neither the database nor the spool can take the predictions
    5  --url: the service cannot be reached, or refused a request
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from api import errors
from batch.files import FileProblem, Source, check_output, open_source
from batch.run import Progress, Scorer, Summary, score_file
from batch.scoring import check_header, score_frame
from serving.lifecycle import collector_paused
from trust.assessment import DEFAULT_COVERAGE

EXIT_REFUSED, EXIT_USAGE, EXIT_MODEL, EXIT_STORE, EXIT_SERVICE = 1, 2, 3, 4, 5
DEFAULT_CHUNK = 100_000
COVERAGE_WITH_URL = "--coverage applies to the local model; the service answers at {coverage}: leave it out with --url"


def main(argv: Sequence[str] | None = None) -> int:
    """Run score.py; the exit code (see the module's docstring)."""
    args = _parser().parse_args(argv)
    if args.spark:
        return _score_on_spark(args)
    try:
        check_output(args.output)
        source = open_source(args.input, args.chunk)
        check_header(source.columns)
    except (FileProblem, ValueError) as exc:
        return _fail(f"{args.input}: {exc}" if not isinstance(exc, FileProblem) else str(exc), EXIT_USAGE)
    if args.url:
        return _score_remote(args, source)
    return _score_locally(args, source)


class _NoModel(Exception):
    """The model is not in the store or cannot be loaded; the message is the model store's, worded for a user."""


def _score_locally(args: argparse.Namespace, source: Source) -> int:
    threadpool_limits(1)  # one BLAS thread: reading and writing, on threads of their own, take the other core
    store = None
    if args.store:
        from batch.storing import PredictionStore
        from config import get_settings

        store = PredictionStore(get_settings())

    def load_scorer() -> Scorer:
        with collector_paused():
            from model.store import ModelUnavailable, load_tag  # BentoML and scikit-learn, while reading

            try:
                classifier = load_tag(args.model)
            except ModelUnavailable as exc:
                raise _NoModel(str(exc)) from None
        gc.freeze()  # what the load made stays: no collection walks it again

        def scorer(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
            scored, rejects = score_frame(classifier, frame, coverage=args.coverage)
            if store is not None:
                store.record(scored, classifier.tag)
            return scored, rejects

        return scorer

    try:
        summary = _run(source, args.output, load_scorer)
    except _NoModel as exc:
        return _fail(str(exc), EXIT_MODEL)
    except errors.StoreUnavailable as exc:
        return _fail(exc.message, EXIT_STORE)
    finally:
        if store is not None:
            store.close()
    stored = f"; stored: {', '.join(f'{n:,} {status}' for status, n in store.statuses.items())}" if store else ""
    return _report(summary, stored)


def _score_remote(args: argparse.Namespace, source: Source) -> int:
    from batch.remote import RemoteScorer, ServiceProblem

    if args.coverage != DEFAULT_COVERAGE:
        return _fail(COVERAGE_WITH_URL.format(coverage=DEFAULT_COVERAGE), EXIT_USAGE)
    try:
        scorer = RemoteScorer(args.url, store=args.store)
    except ServiceProblem as exc:
        return _fail(str(exc), EXIT_SERVICE)
    try:
        summary = _run(source, args.output, lambda: scorer)
    except ServiceProblem as exc:
        return _fail(str(exc), EXIT_SERVICE)
    finally:
        scorer.close()
    return _report(summary, f"; scored by {args.url}" + ("" if args.store else " (not stored)"))


def _score_on_spark(args: argparse.Namespace) -> int:
    """--spark: the same scoring on Spark (batch/spark.py), which reads the input and writes the output and its
    rejects as directories of part files."""
    from batch.spark import SPARK_ALONE, ModelSource, ModelUnavailable, rejects_uri, score_file_on_spark, uri

    if args.url or args.store:
        return _fail(SPARK_ALONE, EXIT_USAGE)
    output = uri(args.output)
    try:
        summary = score_file_on_spark(uri(args.input), output, ModelSource.parse(args.model), args.coverage)
    except ModelUnavailable as exc:
        return _fail(str(exc), EXIT_MODEL)
    except (FileProblem, ValueError) as exc:  # a path Spark cannot read or write, or a wrong header
        return _fail(f"{args.input}: {exc}" if not isinstance(exc, FileProblem) else str(exc), EXIT_USAGE)
    return _report(summary, f"; on Spark: {output} and {rejects_uri(output)} are directories of part files")


def _run(source: Source, output: Path, load_scorer: Callable[[], Scorer]) -> Summary:
    progress = _TerminalBar(source) if sys.stderr.isatty() else Progress()
    return score_file(source, output, load_scorer, progress)


def _report(summary: Summary, note: str) -> int:
    print(summary.line() + note, file=sys.stderr)
    return EXIT_REFUSED if summary.refused else 0


def _fail(message: str, code: int) -> int:
    print(f"score.py: {message}", file=sys.stderr)
    return code


class _TerminalBar(Progress):
    """tqdm's bar: rows, rows/s and time left (the total estimated from the bytes read where rows are not known)."""

    def __init__(self, source: Source) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=source.total_rows, unit="rows", unit_scale=True, file=sys.stderr)

    def update(self, summary: Summary, source: Source) -> None:
        fraction = source.fraction_read()
        if source.total_rows is None and fraction:
            self._bar.total = max(summary.rows, round(summary.rows / fraction))
        self._bar.update(summary.rows - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="score.py", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 all scored, 1 rows refused, 2 usage or wrong header, "
                                            "3 model not found, 4 database and spool unavailable, 5 service "
                                            "unreachable.")
    parser.add_argument("input", type=Path, help="a .csv, .parquet, .jsonl, .arff or UCI .zip file of beans")
    parser.add_argument("--output", type=Path, required=True, help="where to write: .csv, .parquet or .jsonl")
    parser.add_argument("--model", default="drybean_svc:latest", help="the model's tag (default: the newest)")
    parser.add_argument("--store", action="store_true", help="record the predictions in the service's database")
    parser.add_argument("--url", help="score through the service at this URL (V2) instead of loading the model")
    parser.add_argument("--coverage", type=_coverage, default=DEFAULT_COVERAGE,
                        help="the prediction sets' coverage, in (0, 1) (default 0.95)")
    parser.add_argument("--spark", action="store_true", help="score on Spark (local[2], or the cluster spark-submit "
                        "runs on): input and output may be gs:// or hdfs:// paths; the output and rejects are "
                        "directories of part files; --model may name a .bentomodel file (bentoml models export)")
    parser.add_argument("--chunk", type=_positive, default=DEFAULT_CHUNK,
                        help=f"rows read and scored at a time (default {DEFAULT_CHUNK:,})")
    return parser


def _coverage(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1): give a coverage such as 0.95")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of rows")
    return value


if __name__ == "__main__":
    sys.exit(main())
