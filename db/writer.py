"""Group commit: records from concurrent requests share one transaction and one multi-row INSERT.

When the database fails, records go to the durable spool instead, and the writer replays the spool once the
database answers again. Each request learns whether its records were committed or spooled.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.spool import Spool
from db.store import PredictionRecord, RecordKey, insert_predictions, stored_ids

logger = logging.getLogger(__name__)
MAX_ROWS_PER_COMMIT = 20_000
RETRY_SECONDS = 2.0  # after a failure, writes go straight to the spool this long before the database is tried


@dataclass(frozen=True)
class WriteResult:
    """Where a request's records went; ids only when committed."""

    status: Literal["committed", "spooled"]
    ids: dict[RecordKey, int] = field(default_factory=dict)


@dataclass
class _Pending:
    records: list[PredictionRecord]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def resolve(self, outcome: WriteResult | BaseException) -> None:
        """Hand the outcome to the waiting request, on its own event loop."""
        self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: asyncio.Future[WriteResult], outcome: WriteResult | BaseException) -> None:
    if future.done():  # the request was cancelled (client gone); its records are stored regardless
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class GroupCommitWriter:
    """One thread per worker drains every pending write and commits them together.

    While one transaction commits, the next requests queue up; the next round takes them all. `write` returns
    once its records are committed, or durably spooled when the database cannot take them.
    """

    def __init__(self, sessions: sessionmaker[Session], spool: Spool) -> None:
        self._sessions = sessions
        self.spool = spool
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._database_down_until = 0.0
        self._next_replay = 0.0  # replay leftovers (of a previous run, or of a killed worker) first
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
        self._thread.start()

    async def write(self, records: list[PredictionRecord]) -> WriteResult:
        """Commit `records` (or spool them durably); say which."""
        pending = _Pending(records, asyncio.get_running_loop())
        self._queue.put(pending)
        return await pending.future

    def close(self, timeout: float = 30) -> None:
        """Store what is queued, try a last replay, then stop; whatever stays spooled is replayed next start."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._replay_when_due()
            try:
                first = self._queue.get(timeout=RETRY_SECONDS)
            except queue.Empty:
                continue
            batch, stopping = self._gather(first)
            if batch:
                self._store(batch)
            if stopping:
                self._next_replay = 0.0
                self._replay_when_due()
                self.spool.release()
                return

    def _gather(self, first: _Pending | None) -> tuple[list[_Pending], bool]:
        """The first pending write and every other one already queued, up to the size of one commit."""
        if first is None:
            return [], True
        batch, rows = [first], len(first.records)
        while rows < MAX_ROWS_PER_COMMIT:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return batch, True
            batch.append(pending)
            rows += len(pending.records)
        return batch, False

    def _store(self, batch: list[_Pending]) -> None:
        records = [record for pending in batch for record in pending.records]
        if time.monotonic() >= self._database_down_until:
            try:
                with self._sessions.begin() as session:
                    insert_predictions(session, records)
                    ids = stored_ids(session, {record.request_id for record in records})
            except SQLAlchemyError as exc:
                self._database_down_until = time.monotonic() + RETRY_SECONDS
                logger.warning("database write failed, spooling %d prediction(s): %s", len(records),
                               _one_line(exc))
            else:
                for pending in batch:
                    pending.resolve(WriteResult("committed", {r.key: ids[r.key] for r in pending.records}))
                return
        try:
            self.spool.append(records)
        except OSError as exc:
            logger.error("could not spool %d prediction(s): %s", len(records), exc)
            for pending in batch:
                pending.resolve(exc)
            return
        for pending in batch:
            pending.resolve(WriteResult("spooled"))

    def _replay_when_due(self) -> None:
        now = time.monotonic()
        if now < max(self._next_replay, self._database_down_until) or not self.spool.pending():
            return
        self._next_replay = now + RETRY_SECONDS
        try:
            replayed = self.spool.replay(self._store_replayed)
        except SQLAlchemyError as exc:
            self._database_down_until = time.monotonic() + RETRY_SECONDS
            logger.warning("spool replay deferred, the database still fails: %s", _one_line(exc))
            return
        if replayed:
            logger.info("replayed %d spooled prediction(s) into the database", replayed)

    def _store_replayed(self, records: list[PredictionRecord]) -> None:
        with self._sessions.begin() as session:
            insert_predictions(session, records, skip_existing=True)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
