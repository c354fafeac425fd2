"""A durable local journal of what the database could not take, replayed when it returns.

Two kinds of record: predictions, in `*.jsonl` files in the spool directory (the format of earlier versions,
whose spools are read as they are), and feedback, in `feedback/*.jsonl` beneath it (where an earlier version,
replaying only the top directory, would never mistake them for predictions). Replay stores every spooled
prediction before any feedback, since a report may name a bean that is itself still spooled.

Each worker appends to its own file of each kind, holding an exclusive lock on it while it is open; a file whose
lock can be taken is no one's (its worker replayed it, stopped, or was killed), so any worker may replay it. A
file is created under a name no replay looks at, locked, and only then published by a rename (and the directory
fsynced): no replay can take it between its creation and its lock.
Replays are idempotent: a prediction carries its (request_id, bean_index) key and a feedback record names its
bean, and the inserts skip what is already stored, so a record is stored once however often it is replayed.

Every line read back is checked (db/codec.py): one that is not a whole record of this version (torn by a crash,
another feature count) is set aside as a dead letter with the reason (db/deadletter.py), never blocks the rest.
A feedback report whose prediction is not recorded yet (it may wait in another pod's spool) is held in
`feedback/held/`, looked at again now and then, until its prediction arrives or the wait runs out.

The spool is bounded: an append that would take it over `max_bytes`, or that the disk refuses, is undone and
raises `SpoolFull` (an OSError), so that no acknowledged record is ever glued to a torn one.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Generic, TypeVar

from db.codec import (
    HeldFeedback,
    InvalidRecord,
    decode_feedback,
    decode_held,
    decode_prediction,
    encode_feedback,
    encode_held,
    encode_prediction,
)
from db.deadletter import DeadLetter, DeadLetters, Kind, fsync_directory
from db.feedback import FeedbackRecord
from db.store import PredictionRecord

logger = logging.getLogger(__name__)
MIN_FREE_BYTES = 64 << 10  # the disk must keep this much free for the spool to count as having room
FEEDBACK_DIRECTORY = "feedback"
HELD_DIRECTORY = "held"  # beneath FEEDBACK_DIRECTORY
DEAD_LETTER_DIRECTORY = "deadletter"
R = TypeVar("R")


class SpoolFull(OSError):
    """The spool cannot take more records: over its size limit, or out of disk."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.ENOSPC, reason)


@dataclass
class _Cursor:
    """A file being replayed: held locked between chunks, deleted once every record is stored."""

    path: Path
    file: IO[str]


class Spool:
    """Append-only JSON-lines files in one directory, shared by the workers of a service."""

    def __init__(self, directory: Path, max_bytes: int = 1 << 30) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self.dead_letters = DeadLetters(directory / DEAD_LETTER_DIRECTORY)
        self._predictions = _Journal(directory, decode_prediction, "prediction", self.dead_letters)
        self._feedback = _Journal(directory / FEEDBACK_DIRECTORY, decode_feedback, "feedback", self.dead_letters)
        self._held = _Journal(directory / FEEDBACK_DIRECTORY / HELD_DIRECTORY, decode_held, "feedback",
                              self.dead_letters)

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Write predictions durably (written and fsynced) before anyone is told they are spooled."""
        self._append(self._predictions, [encode_prediction(record) for record in records])

    def append_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        """Write feedback records durably, as `append` does predictions."""
        self._append(self._feedback, [encode_feedback(record) for record in records])

    def hold_feedback(self, held: Sequence[HeldFeedback]) -> None:
        """Keep reports whose prediction is not recorded yet, durably, to be looked at again (`replay`)."""
        self._append(self._held, [encode_held(report) for report in held])

    def size(self) -> int:
        """Bytes in the spool, across all workers and kinds."""
        return self._predictions.size() + self._feedback.size() + self._held.size()

    def has_room(self) -> bool:
        """Whether an append of a typical request would fit: under the limit, disk not full, directory writable."""
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        return (self.size() < self.max_bytes and free > MIN_FREE_BYTES
                and os.access(self.directory, os.W_OK | os.X_OK))

    def depth(self) -> int:
        """How many records (predictions and feedback, held reports too) wait in the spool, across all workers."""
        return self._predictions.depth() + self._feedback.depth() + self._held.depth()

    def held(self) -> int:
        """How many feedback records wait for their prediction, across all workers."""
        return self._held.depth()

    def pending(self) -> bool:
        """Whether any spool file exists."""
        return self._predictions.pending() or self._feedback.pending() or self._held.pending()

    def replay(self, store: Callable[[list[PredictionRecord]], None],
               store_feedback: Callable[[list[FeedbackRecord]], None], *, chunk: int = 5_000,
               max_rows: int | None = None, store_held: Callable[[list[HeldFeedback]], None] | None = None) -> int:
        """Hand unowned spooled records to `store` and `store_feedback` (both idempotent) in chunks, deleting each
        file once stored; feedback only once no spooled prediction is left, in any worker's file; then, if given,
        held reports to `store_held` (which may hold them again: those wait for the next call).

        Stops after about `max_rows` records (all when None), keeping its place for the next call; stops at the
        first failure of a store, keeping what is left (the file is replayed from its start next time).
        """
        replayed = self._predictions.replay(store, chunk, max_rows)
        if self._predictions.pending():  # more to come, or in a live worker's file: it replays them itself
            return replayed
        replayed += self._feedback.replay(store_feedback, chunk, None if max_rows is None else max_rows - replayed)
        if store_held is None or self._feedback.pending():
            return replayed
        return replayed + self._held.replay(store_held, chunk, None if max_rows is None else max_rows - replayed)

    def release(self) -> None:
        """Close (and unlock) this worker's files, so that any worker can replay them. Never raises."""
        self._predictions.release()
        self._feedback.release()
        self._held.release()

    def _append(self, journal: _Journal[R], lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode()
        if self.size() + len(data) > self.max_bytes:
            raise SpoolFull(f"the spool in {self.directory} would grow over its limit of {self.max_bytes} bytes")
        try:
            journal.write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"no space left for the spool in {self.directory}") from exc
            raise


class _Journal(Generic[R]):
    """The files of one kind of record in one directory (created on the first append)."""

    def __init__(self, directory: Path, decode: Callable[[str], R], kind: Kind, dead_letters: DeadLetters) -> None:
        self.directory = directory
        self._decode = decode
        self._kind = kind
        self._dead_letters = dead_letters
        self._own: int | None = None  # this worker's file descriptor, opened on the first append
        self._replaying: _Cursor | None = None
        self._counted: dict[Path, tuple[int, int]] = {}  # path -> (bytes counted, lines in them)

    def write(self, data: bytes) -> None:
        """Append `data` to this worker's file and fsync it; undo the append if that fails."""
        own = self._own_file()
        start = os.lseek(own, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(own, view):]
            os.fsync(own)
        except OSError:
            self._undo(own, start)
            raise

    def size(self) -> int:
        """Bytes in these files."""
        return sum(_size(path) for path in self._files())

    def depth(self) -> int:
        """How many records wait in these files (counting only bytes appended since last time)."""
        total, seen = 0, set()
        for path in self._files():
            seen.add(path)
            counted, lines = self._counted.get(path, (0, 0))
            try:
                with path.open("rb") as file:
                    if _size(path) < counted:  # replaced by a new file of the same name
                        counted, lines = 0, 0
                    file.seek(counted)
                    while chunk := file.read(1 << 20):
                        lines += chunk.count(b"\n")
                        counted += len(chunk)
            except FileNotFoundError:  # replayed meanwhile
                continue
            self._counted[path] = (counted, lines)
            total += lines
        self._counted = {path: count for path, count in self._counted.items() if path in seen}
        return total

    def pending(self) -> bool:
        """Whether any file of this kind exists."""
        return any(True for _ in self._files())

    def replay(self, store: Callable[[list[R]], None], chunk: int, max_rows: int | None) -> int:
        """Hand unowned records to `store` in chunks, deleting each file once stored (see `Spool.replay`)."""
        self.release_own()
        replayed = 0
        while max_rows is None or replayed < max_rows:
            cursor = self._replaying or self._next_unowned()
            if cursor is None:
                break
            self._replaying = cursor
            records = list(islice(self._records(cursor), chunk))
            if records:
                try:
                    store(records)
                except BaseException:
                    self._stop_replaying()
                    raise
                replayed += len(records)
            if len(records) < chunk:  # the end of the file
                cursor.path.unlink(missing_ok=True)
                self._stop_replaying()
        return replayed

    def release(self) -> None:
        """Close (and unlock) this worker's files. Never raises."""
        self.release_own()
        self._stop_replaying()

    def release_own(self) -> None:
        """Close this worker's file, so that it can be replayed; the next append starts a new one."""
        if self._own is not None:
            with suppress(OSError):
                os.close(self._own)
            self._own = None

    def _own_file(self) -> int:
        """This worker's file: created under a name replays ignore, locked, then published by a rename."""
        if self._own is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            creating = self.directory / f".{name}.creating"
            own = os.open(creating, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(own, fcntl.LOCK_EX)
                os.rename(creating, self.directory / f"{name}.jsonl")
                fsync_directory(self.directory)  # the file's name survives a crash as its records do
            except OSError:
                os.close(own)
                with suppress(OSError):
                    creating.unlink()
                raise
            self._own = own
        return self._own

    def _undo(self, own: int, start: int) -> None:
        """Cut a failed append off the file; if even that fails, leave the file (its torn tail is never
        replayed as a record) and start a new one."""
        try:
            os.ftruncate(own, start)
        except OSError:
            logger.error("could not undo a failed spool append; continuing in a new spool file")
            self.release_own()

    def _next_unowned(self) -> _Cursor | None:
        for path in self._files():
            try:
                file = path.open("r")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()  # a live worker's current file, or another worker replaying it
                continue
            if not path.exists():  # replayed and deleted between the listing and the lock
                file.close()
                continue
            return _Cursor(path, file)
        return None

    def _records(self, cursor: _Cursor) -> Iterator[R]:
        for line in cursor.file:
            try:
                yield self._decode(line)
            except InvalidRecord as invalid:
                # A write cut short by a crash (its request never answered), or a line of another version: set
                # aside (durably, before the file can be deleted) with the reason, and the rest goes on.
                logger.warning("%s: set a spool line aside as a dead letter: %s", cursor.path, invalid)
                self._dead_letters.add([DeadLetter(self._kind, line.rstrip("\n"), f"spool line: {invalid}")])

    def _stop_replaying(self) -> None:
        if self._replaying is not None:
            with suppress(OSError):
                self._replaying.file.close()
            self._replaying = None

    def _files(self) -> Iterator[Path]:
        return iter(sorted(self.directory.glob("*.jsonl")))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
