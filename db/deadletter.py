"""Dead letters: records the database refuses, set aside on local disk with the reason, so that the rest flows on.

A record is set aside when the database answers and refuses it (a trigger's SIGNAL, a CHECK constraint, a value
the column cannot hold, a grant revoked on its table: db/refusals.py), when its spool line is not a record this
version can store (torn, or another feature count), or, for a spooled feedback report, when its prediction is
still not recorded after DRYBEANS_FEEDBACK_WAIT_SECONDS. Nothing is dropped: the request was answered `spooled`,
and its records wait here for an operator. The count is the metric `drybeans_dead_letters` (alert
DrybeansDeadLetters).

Files: `deadletter/*.jsonl` in the spool directory, one JSON object per line:
`{"kind": "prediction" | "feedback", "line": <the spool line>, "reason": <why>, "at": <UTC time>}`.
Appends are locked, fsynced, and never lost to a replay running at the same time.

Operators, once the cause is fixed (trigger dropped, constraint or grant corrected), on a pod or volume holding
the spool directory, with the service's settings in the environment:

    python -m db.deadletter count     # how many records wait, by reason
    python -m db.deadletter replay    # store what the database now takes; the rest stays, with its new reason

Replaying is idempotent (duplicates are skipped), so a record set aside twice is stored once.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import get_settings
from db.codec import InvalidRecord, decode_feedback, decode_prediction, encode_feedback, encode_prediction
from db.engine import create_db_engine
from db.feedback import FeedbackRecord, insert_feedback
from db.refusals import Refused, commit_isolating, is_refusal
from db.store import PredictionRecord, insert_predictions

logger = logging.getLogger(__name__)
CURRENT = "deadletters.jsonl"
NO_PREDICTION = "names no recorded prediction"
Kind = Literal["prediction", "feedback"]
X = TypeVar("X")


@dataclass(frozen=True)
class DeadLetter:
    """One record set aside: its kind, its spool line, and why."""

    kind: Kind
    line: str
    reason: str


class DeadLetters:
    """The dead-letter files of one spool directory, shared by every worker using it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counted: dict[Path, tuple[int, int, int]] = {}  # path -> (inode, bytes counted, lines in them)

    def add_predictions(self, records: Sequence[PredictionRecord], reason: str) -> None:
        """Set predictions aside durably (written and fsynced) before anyone relies on it."""
        self.add([DeadLetter("prediction", encode_prediction(record), reason) for record in records])

    def add_feedback(self, records: Sequence[FeedbackRecord], reason: str) -> None:
        """Set feedback records aside durably."""
        self.add([DeadLetter("feedback", encode_feedback(record), reason) for record in records])

    def add(self, letters: Sequence[DeadLetter]) -> None:
        """Append letters to the current file, under its lock, and fsync it (and the directory)."""
        if not letters:
            return
        at = datetime.now(UTC).isoformat(timespec="seconds")
        data = "".join(json.dumps({"kind": letter.kind, "line": letter.line, "reason": letter.reason, "at": at},
                                  separators=(",", ":")) + "\n" for letter in letters).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._current() as descriptor:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        fsync_directory(self.directory)

    def count(self) -> int:
        """How many records are set aside (counting only bytes appended since last time)."""
        total, seen = 0, set()
        for path in self._files():
            try:
                with path.open("rb") as file:
                    inode = os.fstat(file.fileno()).st_ino
                    known, counted, lines = self._counted.get(path, (inode, 0, 0))
                    if known != inode:
                        counted, lines = 0, 0
                    file.seek(counted)
                    while chunk := file.read(1 << 20):
                        lines += chunk.count(b"\n")
                        counted += len(chunk)
            except FileNotFoundError:
                continue
            seen.add(path)
            self._counted[path] = (inode, counted, lines)
            total += lines
        self._counted = {path: count for path, count in self._counted.items() if path in seen}
        return total

    def letters(self) -> list[DeadLetter]:
        """Every letter, in file order (for reading, not replay)."""
        return [letter for path in self._files() for letter in _read(path)]

    @contextmanager
    def taken(self) -> Iterator[list[DeadLetter]]:
        """Take every letter for a replay: the current file is moved aside under its lock (appends go on to a new
        one), then each file no other replay holds is read. The files are deleted when the block ends without an
        error; whatever the replay could not store it must `add` again before that."""
        held: list[tuple[Path, int]] = []
        try:
            current = self.directory / CURRENT
            if current.exists():
                with self._current() as descriptor:  # no append can be in flight into it while it is moved
                    os.rename(current, self.directory / f"taken-{uuid.uuid4().hex}.jsonl")
                    fsync_directory(self.directory)
                    # The lock goes with the descriptor; an appender waiting for it finds the file moved and
                    # opens the new current one.
            for path in self._files():
                if (locked := _lock(path)) is not None:
                    held.append((path, locked))
            yield [letter for path, _ in held for letter in _read(path)]
            for path, _ in held:
                path.unlink(missing_ok=True)
            fsync_directory(self.directory)
        finally:
            for _, descriptor in held:
                os.close(descriptor)

    @contextmanager
    def _current(self) -> Iterator[int]:
        """The current file, open for appending and locked; never one a replay moved aside meanwhile."""
        path = self.directory / CURRENT
        while True:
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                with suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                        yield descriptor
                        return
            finally:
                os.close(descriptor)

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []


def replay(engine: Engine, letters: DeadLetters) -> tuple[int, list[DeadLetter]]:
    """Store every dead letter the database now takes; how many were stored, and those set aside again (each
    with its new reason). An outage raises, leaving every letter in place."""
    with letters.taken() as taken:
        kept: list[DeadLetter] = []
        predictions: list[tuple[PredictionRecord, DeadLetter]] = []
        reports: list[tuple[FeedbackRecord, DeadLetter]] = []
        for letter in taken:
            try:
                if letter.kind == "prediction":
                    predictions.append((decode_prediction(letter.line), letter))
                else:
                    reports.append((decode_feedback(letter.line), letter))
            except InvalidRecord as invalid:
                kept.append(DeadLetter(letter.kind, letter.line, str(invalid)))
        kept += _store(engine, _by_request(predictions), _insert_predictions)
        kept += _store(engine, [[report] for report in reports], _insert_feedback)
        letters.add(kept)
    return len(taken) - len(kept), kept


def _insert_predictions(engine: Engine, records: list[PredictionRecord]) -> list[PredictionRecord]:
    with engine.begin() as connection:
        insert_predictions(connection, records, skip_existing=True)
    return []


def _insert_feedback(engine: Engine, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
    with engine.begin() as connection:
        return insert_feedback(connection, records, skip_existing=True).unknown


def _store(engine: Engine, groups: list[list[tuple[X, DeadLetter]]],
           insert: Callable[[Engine, list[X]], list[X]]) -> list[DeadLetter]:
    """Insert the groups' records, halving around refusals; the letters refused, or naming no prediction (the
    records `insert` returns)."""
    unknown: list[X] = []

    def commit(part: Sequence[list[tuple[X, DeadLetter]]]) -> list[None]:
        unknown.extend(insert(engine, [record for group in part for record, _ in group]))
        return [None] * len(part)

    if not groups:
        return []
    try:
        results: list[Refused | None] = list(commit(groups))
    except SQLAlchemyError as error:
        if not is_refusal(error):
            raise
        results = commit_isolating(groups, commit, error)
    kept = [DeadLetter(letter.kind, letter.line, result.reason) for group, result in zip(groups, results, strict=True)
            if isinstance(result, Refused) for _, letter in group]
    missing = {id(record) for record in unknown}
    return kept + [DeadLetter(letter.kind, letter.line, NO_PREDICTION) for group in groups for record, letter in group
                   if id(record) in missing]


def _by_request(predictions: list[tuple[PredictionRecord, DeadLetter]]
                ) -> list[list[tuple[PredictionRecord, DeadLetter]]]:
    """Consecutive records of one request, together: a request is stored whole or set aside whole."""
    groups: list[list[tuple[PredictionRecord, DeadLetter]]] = []
    for record, letter in predictions:
        if groups and groups[-1][0][0].request_id == record.request_id:
            groups[-1].append((record, letter))
        else:
            groups.append([(record, letter)])
    return groups


def _read(path: Path) -> list[DeadLetter]:
    letters = []
    with suppress(FileNotFoundError), path.open() as file:
        for line in file:
            try:
                fields = json.loads(line)
                letters.append(DeadLetter(fields["kind"], fields["line"], fields["reason"]))
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: skipping a line that is not a dead letter: %.80s", path, line)
    return letters


def _lock(path: Path) -> int | None:
    """The file opened and locked, unless another replay holds it or it is gone."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    if not path.exists():
        os.close(descriptor)
        return None
    return descriptor


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a file created, renamed or deleted) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def main(argv: list[str] | None = None) -> int:
    """`count`: how many records wait, by reason; `replay`: store what the database now takes."""
    parser = argparse.ArgumentParser(prog="python -m db.deadletter", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("count", "replay"))
    command = parser.parse_args(argv).command
    settings = get_settings()
    letters = DeadLetters(settings.spool_dir / "deadletter")
    if command == "count":
        reasons = Counter(letter.reason for letter in letters.letters())
        print(f"{sum(reasons.values())} dead letter(s) in {letters.directory}")
        for reason, count in reasons.most_common():
            print(f"{count:8d}  {reason}")
        return 0
    engine = create_db_engine(settings)
    try:
        stored, kept = replay(engine, letters)
    except SQLAlchemyError as error:
        print(f"the database is unavailable, nothing replayed: {type(error).__name__}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"stored {stored} dead letter(s); {len(kept)} still refused, kept in {letters.directory}")
    for reason, count in Counter(letter.reason for letter in kept).most_common():
        print(f"{count:8d}  {reason}")
    return 0 if not kept else 3


if __name__ == "__main__":
    sys.exit(main())
