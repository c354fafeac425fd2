"""A durable local journal of predictions the database could not take, replayed when it returns.

Each worker appends to its own file, holding an exclusive lock on it while it is open; a file whose lock can be
taken is no one's (its worker replayed it, stopped, or was killed), so any worker may replay it. Replays are
idempotent: records carry their (request_id, bean_index) key and the insert skips keys already stored, so a
record is stored exactly once however often it is replayed.

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
from typing import IO

from db.store import PredictionRecord

logger = logging.getLogger(__name__)
MIN_FREE_BYTES = 64 << 10  # the disk must keep this much free for the spool to count as having room


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
        self._own: int | None = None  # this worker's file descriptor, opened on the first append
        self._replaying: _Cursor | None = None
        self._counted: dict[Path, tuple[int, int]] = {}  # path -> (bytes counted, lines in them)

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Write records durably (written and fsynced) before anyone is told they are spooled."""
        data = "".join(_encode(record) + "\n" for record in records).encode()
        if self.size() + len(data) > self.max_bytes:
            raise SpoolFull(f"the spool in {self.directory} would grow over its limit of {self.max_bytes} bytes")
        own = self._own_file()
        start = os.lseek(own, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(own, view):]
            os.fsync(own)
        except OSError as exc:
            self._undo(own, start)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"no space left for the spool in {self.directory}") from exc
            raise

    def size(self) -> int:
        """Bytes in the spool, across all workers."""
        return sum(_size(path) for path in self._files())

    def has_room(self) -> bool:
        """Whether an append of a typical request would fit: under the limit, disk not full, directory writable."""
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        return (self.size() < self.max_bytes and free > MIN_FREE_BYTES
                and os.access(self.directory, os.W_OK | os.X_OK))

    def depth(self) -> int:
        """How many records wait in the spool, across all workers (counting only bytes appended since last time)."""
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
        """Whether any spool file exists."""
        return any(True for _ in self._files())

    def replay(self, store: Callable[[list[PredictionRecord]], None], *, chunk: int = 5_000,
               max_rows: int | None = None) -> int:
        """Hand unowned spooled records to `store` (idempotent) in chunks, deleting each file once stored.

        Stops after about `max_rows` records (all when None), keeping its place for the next call; stops at the
        first failure of `store`, keeping what is left (the file is replayed from its start next time).
        """
        self._close_own()
        replayed = 0
        while max_rows is None or replayed < max_rows:
            cursor = self._replaying or self._next_unowned()
            if cursor is None:
                break
            self._replaying = cursor
            records = list(islice(_decode(cursor.file, cursor.path), chunk))
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
        """Close (and unlock) this worker's files, so that any worker can replay them. Never raises."""
        self._close_own()
        self._stop_replaying()

    def _own_file(self) -> int:
        if self._own is None:
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
            self._close_own()

    def _close_own(self) -> None:
        if self._own is not None:
            with suppress(OSError):
                os.close(self._own)
            self._own = None

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


def _encode(record: PredictionRecord) -> str:
    return json.dumps([record.request_id, record.bean_index, record.name, record.model_tag,
                       record.created_at.isoformat(), record.features], separators=(",", ":"))


def _decode(file: IO[str], path: Path) -> Iterator[PredictionRecord]:
    for line in file:
        try:
            request_id, index, name, model_tag, created_at, features = json.loads(line)
            yield PredictionRecord(request_id, index, name, model_tag, datetime.fromisoformat(created_at),
                                   tuple(features))
        except (ValueError, TypeError):
            # Only a write cut short by a crash leaves a torn line, and its request was never answered.
            logger.warning("%s: skipping a torn spool line", path)
