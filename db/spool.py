"""A durable local journal of predictions the database could not take, replayed when it returns.

Each worker appends to its own file, holding an exclusive lock on it while it is open; a file whose lock can be
taken is no one's (its worker replayed it, stopped, or was killed), so any worker may replay it. Replays are
idempotent: records carry their (request_id, bean_index) key and the insert skips keys already stored, so a
record is stored exactly once however often it is replayed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from db.store import PredictionRecord

logger = logging.getLogger(__name__)
REPLAY_CHUNK = 5_000


class Spool:
    """Append-only JSON-lines files in one directory, shared by the workers of a service."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._own: IO[str] | None = None

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Write records durably (flushed and fsynced) before anyone is told they are spooled."""
        if self._own is None:
            self._own = (self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl").open("a")
            fcntl.flock(self._own, fcntl.LOCK_EX)
        self._own.write("".join(_encode(record) + "\n" for record in records))
        self._own.flush()
        os.fsync(self._own.fileno())

    def depth(self) -> int:
        """How many records wait in the spool, across all workers."""
        total = 0
        for path in self._files():
            try:
                with path.open("rb") as file:
                    while chunk := file.read(1 << 20):
                        total += chunk.count(b"\n")
            except FileNotFoundError:  # replayed meanwhile
                continue
        return total

    def pending(self) -> bool:
        """Whether any spool file exists."""
        return any(True for _ in self._files())

    def replay(self, store: Callable[[list[PredictionRecord]], None]) -> int:
        """Hand every unowned spooled record to `store` (idempotent), deleting each file once stored.

        Stops at the first failure of `store`, keeping what is left for the next replay.
        """
        self.release()
        replayed = 0
        for path in self._files():
            try:
                file = path.open("r")
            except FileNotFoundError:
                continue
            with file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live worker's current file
                records = list(_decode_all(file, path))
                for start in range(0, len(records), REPLAY_CHUNK):
                    store(records[start:start + REPLAY_CHUNK])
                path.unlink(missing_ok=True)
                replayed += len(records)
        return replayed

    def release(self) -> None:
        """Close (and unlock) this worker's file, so that it can be replayed."""
        if self._own is not None:
            self._own.close()
            self._own = None

    def _files(self) -> Iterator[Path]:
        return iter(sorted(self.directory.glob("*.jsonl")))


def _encode(record: PredictionRecord) -> str:
    return json.dumps([record.request_id, record.bean_index, record.name, record.model_tag,
                       record.created_at.isoformat(), record.features], separators=(",", ":"))


def _decode_all(file: IO[str], path: Path) -> Iterator[PredictionRecord]:
    for number, line in enumerate(file, start=1):
        try:
            request_id, index, name, model_tag, created_at, features = json.loads(line)
            yield PredictionRecord(request_id, index, name, model_tag, datetime.fromisoformat(created_at),
                                   tuple(features))
        except (ValueError, TypeError):
            # Only a write cut short by a crash leaves a torn line, and its request was never answered.
            logger.warning("%s:%d: skipping a torn spool line", path, number)
