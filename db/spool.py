"""A durable local journal of what the database could not take, replayed when it returns.

Two kinds of record: predictions, in `*.jsonl` files in the spool directory (the format of earlier versions,
whose spools are read as they are), and feedback, in `feedback/*.jsonl` beneath it (where an earlier version,
replaying only the top directory, would never mistake them for predictions). Replay stores every spooled
prediction before any feedback, since a report may name a bean that is itself still spooled.

Each worker appends to its own file of each kind, holding an exclusive lock on it while it is open; a file whose
lock can be taken is no one's (its worker replayed it, stopped, or was killed), so any worker may replay it.
Replays are idempotent: a prediction carries its (request_id, bean_index) key and a feedback record names its
bean, and the inserts skip what is already stored, so a record is stored once however often it is replayed.

The spool is bounded: an append that would take it over `max_bytes`, or that the disk refuses, is undone and
raises `SpoolFull` (an OSError), so that no acknowledged record is ever glued to a torn one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Generic, TypeVar

from db.feedback import FeedbackRecord
from db.store import PredictionRecord

logger = logging.getLogger(__name__)
MIN_FREE_BYTES = 64 << 10  # the disk must keep this much free for the spool to count as having room
FEEDBACK_DIRECTORY = "feedback"
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
        self._predictions = _Journal(directory, _decode_prediction)
        self._feedback = _Journal(directory / FEEDBACK_DIRECTORY, _decode_feedback)

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Write predictions durably (written and fsynced) before anyone is told they are spooled."""
        self._append(self._predictions, [_encode_prediction(record) for record in records])

    def append_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        """Write feedback records durably, as `append` does predictions."""
        self._append(self._feedback, [_encode_feedback(record) for record in records])

    def size(self) -> int:
        """Bytes in the spool, across all workers and both kinds."""
        return self._predictions.size() + self._feedback.size()

    def has_room(self) -> bool:
        """Whether an append of a typical request would fit: under the limit, disk not full, directory writable."""
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        return (self.size() < self.max_bytes and free > MIN_FREE_BYTES
                and os.access(self.directory, os.W_OK | os.X_OK))

    def depth(self) -> int:
        """How many records (predictions and feedback) wait in the spool, across all workers."""
        return self._predictions.depth() + self._feedback.depth()

    def pending(self) -> bool:
        """Whether any spool file exists."""
        return self._predictions.pending() or self._feedback.pending()

    def replay(self, store: Callable[[list[PredictionRecord]], None],
               store_feedback: Callable[[list[FeedbackRecord]], None], *, chunk: int = 5_000,
               max_rows: int | None = None) -> int:
        """Hand unowned spooled records to `store` and `store_feedback` (both idempotent) in chunks, deleting each
        file once stored; feedback only once no spooled prediction is left, in any worker's file.

        Stops after about `max_rows` records (all when None), keeping its place for the next call; stops at the
        first failure of a store, keeping what is left (the file is replayed from its start next time).
        """
        replayed = self._predictions.replay(store, chunk, max_rows)
        if self._predictions.pending():  # more to come, or in a live worker's file: it replays them itself
            return replayed
        return replayed + self._feedback.replay(store_feedback, chunk,
                                                None if max_rows is None else max_rows - replayed)

    def release(self) -> None:
        """Close (and unlock) this worker's files, so that any worker can replay them. Never raises."""
        self._predictions.release()
        self._feedback.release()

    def _append(self, journal: _Journal[R], lines: list[str]) -> None:
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

    def __init__(self, directory: Path, decode: Callable[[str], R]) -> None:
        self.directory = directory
        self._decode = decode
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
        if self._own is None:
            self.directory.mkdir(exist_ok=True)
            path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            own = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(own, fcntl.LOCK_EX)
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
            except (ValueError, TypeError, KeyError):
                # Only a write cut short by a crash leaves a torn line, and its request was never answered.
                logger.warning("%s: skipping a torn spool line", cursor.path)

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


def _encode_prediction(record: PredictionRecord) -> str:
    return json.dumps([record.request_id, record.bean_index, record.name, record.model_tag,
                       record.created_at.isoformat(), record.features], separators=(",", ":"))


def _decode_prediction(line: str) -> PredictionRecord:
    request_id, index, name, model_tag, created_at, features = json.loads(line)
    # Typed as the writer formats them into SQL: an int, strings the driver escapes, finite floats.
    return PredictionRecord(str(request_id), int(index), str(name), str(model_tag), datetime.fromisoformat(created_at),
                            tuple(float(value) for value in features))


def _encode_feedback(record: FeedbackRecord) -> str:
    return json.dumps({"variety": record.variety, "reported_at": record.reported_at.isoformat(),
                       "record_id": record.record_id, "request_id": record.request_id,
                       "bean_index": record.bean_index}, separators=(",", ":"))


def _decode_feedback(line: str) -> FeedbackRecord:
    fields = json.loads(line)
    return FeedbackRecord(fields["variety"], datetime.fromisoformat(fields["reported_at"]),
                          record_id=fields["record_id"], request_id=fields["request_id"],
                          bean_index=fields["bean_index"])
