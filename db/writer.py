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
REPLAY_CHUNK_ROWS = 1_000  # a live write waits behind at most one chunk of replay
FIRST_RETRY_SECONDS = 2.0  # after a failure, writes go straight to the spool this long, doubling per failure
MAX_RETRY_SECONDS = 16.0
FAST_FAILURE_SECONDS = 1.0  # a failure this quick is a dead connection: worth one retry on a fresh one
T = TypeVar("T")


class WriteFailed(Exception):
    """Neither the database nor the spool could take a request's records; the message says why."""


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
    connection open (no pool checkout, pre-ping or reset per commit); a write that fails fast (a connection the
    server closed while idle) is retried once on a fresh connection before the records are spooled.

    Live writes come first: the spool is replayed in chunks of `REPLAY_CHUNK_ROWS`, at most
    `replay_rows_per_second`, and never more than half of the thread's time. The thread survives any error:
    it logs it, fails the requests of that round, and carries on after a growing pause; `alive` says whether
    it runs (its death is a liveness failure).
    """

    def __init__(self, engine: Engine, spool: Spool, *, replay_rows_per_second: int = 20_000) -> None:
        self._engine = engine
        self.spool = spool
        self._replay_interval = REPLAY_CHUNK_ROWS / replay_rows_per_second
        self._connection: Connection | None = None
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._retry_delay = FIRST_RETRY_SECONDS
        self._database_down_until = 0.0
        self._next_replay = 0.0  # replay leftovers (of a previous run, or of a killed worker) first
        self._drain_seconds = 0.0  # set by close()
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (until `close`)."""
        return self._thread.is_alive()

    async def write(self, records: list[PredictionRecord], *, want_ids: bool = False) -> WriteResult:
        """Commit `records` (or spool them durably); say which, with their ids if asked for."""
        pending = _Pending(records, want_ids, asyncio.get_running_loop())
        self._queue.put(pending)
        return await pending.future

    def close(self, drain_seconds: float = 20.0) -> None:
        """Store what is queued, replay the spool for up to `drain_seconds`, then stop.

        Whatever stays spooled is replayed by the next start (of this or any worker sharing the spool).
        """
        self._drain_seconds = drain_seconds
        self._queue.put(None)
        self._thread.join(drain_seconds + MAX_RETRY_SECONDS)
        if self._thread.is_alive():
            logger.warning("the prediction writer did not stop in time; its spool stays on disk")

    def _run(self) -> None:
        pause = FIRST_RETRY_SECONDS
        while True:
            try:
                if self._round():
                    return
                pause = FIRST_RETRY_SECONDS
            except Exception:
                logger.exception("prediction writer: unexpected error; carrying on in %.0f s", pause)
                self._disconnect()
                time.sleep(pause)
                pause = min(2 * pause, MAX_RETRY_SECONDS)

    def _round(self) -> bool:
        """Store the live writes waiting, or replay one chunk of the spool when due; True once closed."""
        try:
            first = self._queue.get(timeout=max(0.0, self._replay_due() - time.monotonic()))
        except queue.Empty:
            self._replay(max_rows=REPLAY_CHUNK_ROWS)
            return False
        batch, stopping = self._gather(first)
        if batch:
            self._store(batch)
        if stopping:
            self._drain(self._drain_seconds)
            return True
        self._replay(max_rows=REPLAY_CHUNK_ROWS)  # when due: under constant traffic, replay still gets its turn
        return False

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
        """Commit the batch, or spool it; every request of the batch hears the outcome, whatever happens."""
        try:
            outcome = self._commit_or_spool(batch)
            results = [WriteResult(outcome.status, {r.key: outcome.ids[r.key] for r in pending.records}
                                   if pending.want_ids and outcome.status == "committed" else {})
                       for pending in batch]
        except Exception as exc:
            failure = exc if isinstance(exc, WriteFailed) else WriteFailed(f"unexpected {type(exc).__name__}")
            for pending in batch:
                pending.resolve(failure)
            if not isinstance(exc, WriteFailed):
                raise
            return
        for pending, result in zip(batch, results, strict=True):
            pending.resolve(result)

    def _commit_or_spool(self, batch: list[_Pending]) -> WriteResult:
        records = [record for pending in batch for record in pending.records]
        if time.monotonic() >= self._database_down_until:
            wanted = {p.records[0].request_id for p in batch if p.want_ids}
            try:
                ids = self._in_transaction(lambda c: self._insert(c, records, wanted))
            except SQLAlchemyError as exc:
                self._database_failed()
                logger.warning("database write failed, spooling %d prediction(s): %s", len(records),
                               _one_line(exc))
            else:
                self._retry_delay = FIRST_RETRY_SECONDS
                return WriteResult("committed", ids)
        try:
            self.spool.append(records)
        except OSError as exc:
            logger.error("could not spool %d prediction(s): %s", len(records), exc.strerror or exc)
            raise WriteFailed(exc.strerror or str(exc)) from exc
        return WriteResult("spooled")

    @staticmethod
    def _insert(connection: Connection, records: list[PredictionRecord], wanted: set[str]) -> dict[RecordKey, int]:
        insert_predictions(connection, records)
        return stored_ids(connection, wanted) if wanted else {}

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction on the writer's connection; retry once if it failed fast."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._engine.connect()
                with self._connection.begin():
                    return work(self._connection)
            except SQLAlchemyError:
                self._disconnect()
                # A slow failure is a timeout: the database is frozen or far away, and a retry would double
                # the wait of every request in the batch.
                if attempt == 2 or time.monotonic() - started > FAST_FAILURE_SECONDS:
                    raise
        raise AssertionError("unreachable")

    def _database_failed(self) -> None:
        self._database_down_until = time.monotonic() + self._retry_delay
        self._retry_delay = min(2 * self._retry_delay, MAX_RETRY_SECONDS)

    def _replay_due(self) -> float:
        return max(self._next_replay, self._database_down_until)

    def _replay(self, max_rows: int | None) -> int:
        """Replay up to `max_rows` spooled records (idempotently); schedule the next chunk."""
        if time.monotonic() < self._replay_due():
            return 0
        started = time.monotonic()
        self._next_replay = started + FIRST_RETRY_SECONDS  # an empty spool is looked at once per period
        if not self.spool.pending():
            return 0
        try:
            replayed = self.spool.replay(lambda records: self._in_transaction(
                lambda connection: insert_predictions(connection, records, skip_existing=True)),
                chunk=REPLAY_CHUNK_ROWS, max_rows=max_rows)
        except SQLAlchemyError as exc:
            self._database_failed()
            logger.warning("spool replay deferred, the database still fails: %s", _one_line(exc))
            return 0
        took = time.monotonic() - started
        # Next chunk: after as long again as this one took (live writes get at least half the time), and no
        # faster than the configured rate.
        self._next_replay = started + max(2 * took, self._replay_interval * replayed / REPLAY_CHUNK_ROWS)
        if replayed:
            logger.info("replayed %d spooled prediction(s) into the database", replayed)
        return replayed

    def _drain(self, seconds: float) -> None:
        """On close: replay as much of the spool as the database takes in `seconds`, then let go of it."""
        deadline = time.monotonic() + seconds
        self._next_replay = self._database_down_until = 0.0
        while time.monotonic() < deadline:
            self._next_replay = 0.0
            if not self._replay(max_rows=REPLAY_CHUNK_ROWS):
                break  # all replayed, or the database still fails: what is left waits for the next start
        self.spool.release()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
