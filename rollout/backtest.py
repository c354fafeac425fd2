"""Backtest a candidate model on the stored predictions: re-score them and compare with the answers given.

    python -m rollout.backtest --candidate drybean_svc:<version> [--champion TAG] [--since ISO] [--limit N]
                               [--chunk 10000] [--json]

Reads the recorded beans that have features (of the champion: by default the model of the newest one; from
--since on; the newest --limit of them), with their reported true varieties, in chunks by id, re-scores each
chunk with the candidate from the BentoML model store, and prints the comparison of rollout/compare.py (the one
the compare route gives): agreement and the flip matrix on every bean; both accuracies, per-variety recall and the
exact McNemar test on the labelled ones. A progress bar goes to stderr when it is a terminal, one summary line
otherwise. The database and the minimum count (DRYBEANS_QUALITY_MIN_COUNT) come from the service's settings.

Exit codes: 0 compared; 2 wrong arguments; 3 the candidate is not in the model store or cannot be loaded;
4 the database cannot be reached or read; 5 no stored prediction matches.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Select, func, select
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from api import errors
from config import get_settings
from data.schema import CLASSES
from db.engine import create_db_engine
from db.models import FEATURE_COLUMNS, Feedback, Prediction
from model.classifier import Classifier
from model.store import ModelUnavailable, load_tag
from rollout.compare import Comparison, Tally, compare, tally

EXIT_CANDIDATE, EXIT_DATABASE, EXIT_NO_PREDICTIONS = 3, 4, 5
FEATURE_ATTRIBUTES = [getattr(Prediction, column) for column in FEATURE_COLUMNS.values()]
Chunk = tuple[npt.NDArray[np.float64], list[str], list[str | None]]  # features, stored labels, true varieties


class BacktestError(Exception):
    """A problem the user can fix, with the process exit code it ends with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Window:
    """The stored predictions to re-score: the filters, and the ids and count they select."""

    champion: str
    since: datetime | None
    first_id: int
    last_id: int
    count: int

    def where(self, query: Select[Any]) -> Select[Any]:
        """`query` restricted to the window."""
        return _filtered(query, self.champion, self.since).where(Prediction.id.between(self.first_id, self.last_id))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m rollout.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", required=True, help="the model to try, as tagged in the model store "
                                                           "(drybean_svc:<version>)")
    parser.add_argument("--champion", help="re-score only the predictions this model tag made; default: the model "
                                           "of the newest stored prediction")
    parser.add_argument("--since", type=_utc, help="only predictions made from then on (ISO 8601; UTC unless it "
                                                   "has an offset)")
    parser.add_argument("--limit", type=_positive, help="only the newest N of them")
    parser.add_argument("--chunk", type=_positive, default=10_000, help="beans read and re-scored at a time "
                                                                        "(default 10000)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    return parser.parse_args(argv)


def find_window(connection: Connection, champion: str | None, since: datetime | None, limit: int | None) -> Window:
    """The predictions to re-score (the newest `limit` when given), counted once for the progress bar."""
    if champion is None:
        champion = connection.scalar(_filtered(select(Prediction.model_tag), None, None)
                                     .order_by(Prediction.id.desc()).limit(1))
    ids = _filtered(select(Prediction.id), champion, since).order_by(Prediction.id.desc()).limit(limit).subquery()
    count, first_id, last_id = connection.execute(select(func.count(), func.min(ids.c.id), func.max(ids.c.id))).one()
    if champion is None or not count:
        filters = (f" of model {errors.shown(champion)}" if champion else "") + (f" since {since:%Y-%m-%dT%H:%M:%S}Z"
                                                                                if since else "")
        raise BacktestError(errors.NO_STORED_PREDICTIONS.format(filters=filters, url=_shown_url()),
                            EXIT_NO_PREDICTIONS)
    return Window(champion, since, first_id, last_id, count)


def chunks(connection: Connection, window: Window, size: int) -> Iterator[Chunk]:
    """The window's features, stored labels and true varieties (None: not reported), `size` beans at a time, by id."""
    query = window.where(select(Prediction.id, Prediction.name, Feedback.variety, *FEATURE_ATTRIBUTES)
                         .outerjoin(Feedback, Feedback.record_id == Prediction.id)).order_by(Prediction.id).limit(size)
    after = window.first_id - 1
    while rows := connection.execute(query.where(Prediction.id > after)).all():
        connection.rollback()  # hold no snapshot open between chunks
        after = rows[-1][0]
        yield (np.array([row[3:] for row in rows], dtype=np.float64), [row[1] for row in rows],
               [row[2] for row in rows])


def backtest(connection: Connection, classifier: Classifier, window: Window, chunk: int, progress: tqdm) -> Tally:
    """Re-score the window with `classifier`, counting its labels against the stored ones."""
    counts = Tally.empty()
    for features, stored, truth in chunks(connection, window, chunk):
        labels, _ = classifier.classify(features)
        counts += tally(stored, labels, truth)
        progress.update(len(stored))
    return counts


def render(report: Comparison) -> str:
    """The comparison as a short table."""
    champion, challenger, test = report.champion, report.challenger, report.mcnemar
    verdict = f"the challenger is {report.verdict}" if report.verdict in ("better", "worse") else report.verdict
    lines = [
        f"champion:   {champion.model}",
        f"challenger: {challenger.model}",
        f"beans: {report.counts.scored:,} scored, {report.counts.labelled:,} labelled "
        f"(figures need {report.counts.min_count}); agreement {_figure(report.agreement)}",
        f"{'':<18}{'champion':>10}{'challenger':>12}",
        f"{'accuracy':<18}{_figure(champion.accuracy):>10}{_figure(challenger.accuracy):>12}",
        *(f"{'recall ' + name:<18}{_figure(champion.recall[name]):>10}{_figure(challenger.recall[name]):>12}"
          for name in CLASSES),
        f"McNemar: champion alone right {test.b}, challenger alone right {test.c}, p = {test.p_value:.4g}",
        f"verdict: {verdict}",
        "flips (rows: champion, columns: challenger):",
        " " * 10 + "".join(f"{name:>10}" for name in CLASSES),
        *(f"{name:<10}" + "".join(f"{count:>10}" for count in row)
          for name, row in zip(CLASSES, report.flips.counts, strict=True)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the backtest; return the exit code."""
    args = parse_args(argv)
    settings = get_settings()
    terminal = sys.stderr.isatty()
    try:
        try:
            classifier = load_tag(args.candidate)
        except ModelUnavailable as error:
            raise BacktestError(str(error), EXIT_CANDIDATE) from None
        engine = create_db_engine(settings, bounded=False)  # a chunk of a large, filtered table may take a while
        try:
            with engine.connect() as connection:
                window = find_window(connection, args.champion, args.since, args.limit)
                start = time.perf_counter()
                with tqdm(total=window.count, unit=" beans", file=sys.stderr, disable=not terminal,
                          desc="backtest", **(_screen() if terminal else {})) as progress:
                    counts = backtest(connection, classifier, window, args.chunk, progress)
                seconds = time.perf_counter() - start
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error  # the driver's error: (2003, "Can't connect ...")
            reason = " ".join(str(arg) for arg in cause.args).splitlines()[0]
            raise BacktestError(errors.BACKTEST_DATABASE_UNAVAILABLE.format(url=_shown_url(), reason=reason),
                                EXIT_DATABASE) from None
        finally:
            engine.dispose()
    except BacktestError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    report = compare(counts, min_count=settings.quality_min_count, champion=window.champion,
                     challenger=classifier.tag)
    if not terminal:
        print(f"backtest: re-scored {report.counts.scored:,} beans of {window.champion} with {classifier.tag} in "
              f"{seconds:.2f} s ({report.counts.scored / max(seconds, 1e-9):,.0f} beans/s)", file=sys.stderr)
    print(report.model_dump_json(indent=2) if args.json else render(report))
    return 0


def _filtered(query: Select[Any], champion: str | None, since: datetime | None) -> Select[Any]:
    """Predictions that have features (tutorial-era rows have none), of `champion`, from `since` on."""
    query = query.where(*(attribute.is_not(None) for attribute in FEATURE_ATTRIBUTES))
    if champion is not None:
        query = query.where(Prediction.model_tag == champion)
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    return query


def _screen() -> dict[str, int]:
    """stderr's terminal size for tqdm; 80 x 24 where it tells none (a pseudo-terminal made without a size), since
    tqdm draws nothing on a screen of 0 columns or rows."""
    size = os.get_terminal_size(sys.stderr.fileno())
    return {"ncols": size.columns or 80, "nrows": size.lines or 24}


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _shown_url() -> str:
    return get_settings().sqlalchemy_url.render_as_string(hide_password=True)


def _utc(text: str) -> datetime:
    """An ISO 8601 time as naive UTC, as created_at is stored."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{errors.shown(text)} is not an ISO 8601 time such as "
                                         "2026-11-25T00:00:00Z") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{errors.shown(text)} is not a positive whole number")
    return value


if __name__ == "__main__":
    sys.exit(main())
