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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from db.spool import Spool
from db.store import PredictionRecord, RecordKey, insert_predictions, stored_ids

logger = logging.getLogger(__name__)
MAX_ROWS_PER_COMMIT = 20_000
RETRY_SECONDS = 2.0  # after a failure, writes go straight to the spool this long before the database is tried
T = TypeVar("T")


@dataclass(frozen=True)
class WriteResult:
    """Where a request's records went; their ids when committed and asked for."""

    status: Literal["committed", "spooled"]
    ids: dict[RecordKey, int] = field(default_factory=dict)


@dataclass
class _Pending:
    records: list[PredictionRecord]
    want_ids: bool
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
    once its records are committed, or durably spooled when the database cannot take them. The thread keeps one
    connection open (no pool checkout, pre-ping or reset per commit); a failed write is retried once on a fresh
    connection, which covers a connection the server closed while idle, before the records are spooled.
    """

    def __init__(self, engine: Engine, spool: Spool) -> None:
        self._engine = engine
        self.spool = spool
        self._connection: Connection | None = None
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._database_down_until = 0.0
        self._next_replay = 0.0  # replay leftovers (of a previous run, or of a killed worker) first
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
        self._thread.start()

    async def write(self, records: list[PredictionRecord], *, want_ids: bool = False) -> WriteResult:
        """Commit `records` (or spool them durably); say which, with their ids if asked for."""
        pending = _Pending(records, want_ids, asyncio.get_running_loop())
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
                self._disconnect()
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
            wanted = {p.records[0].request_id for p in batch if p.want_ids}
            try:
                ids = self._in_transaction(lambda c: self._insert(c, records, wanted))
            except SQLAlchemyError as exc:
                self._database_down_until = time.monotonic() + RETRY_SECONDS
                logger.warning("database write failed, spooling %d prediction(s): %s", len(records),
                               _one_line(exc))
            else:
                for pending in batch:
                    known = {r.key: ids[r.key] for r in pending.records} if pending.want_ids else {}
                    pending.resolve(WriteResult("committed", known))
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

    @staticmethod
    def _insert(connection: Connection, records: list[PredictionRecord], wanted: set[str]) -> dict[RecordKey, int]:
        insert_predictions(connection, records)
        return stored_ids(connection, wanted) if wanted else {}

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction on the writer's connection, retrying once on a fresh connection."""
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._engine.connect()
                with self._connection.begin():
                    return work(self._connection)
            except SQLAlchemyError:
                self._disconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None

    def _replay_when_due(self) -> None:
        now = time.monotonic()
        if now < max(self._next_replay, self._database_down_until):
            return
        self._next_replay = now + RETRY_SECONDS  # the spool directory is looked at once per period, not per commit
        if not self.spool.pending():
            return
        try:
            replayed = self.spool.replay(lambda records: self._in_transaction(
                lambda connection: insert_predictions(connection, records, skip_existing=True)))
        except SQLAlchemyError as exc:
            self._database_down_until = time.monotonic() + RETRY_SECONDS
            logger.warning("spool replay deferred, the database still fails: %s", _one_line(exc))
            return
        if replayed:
            logger.info("replayed %d spooled prediction(s) into the database", replayed)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
