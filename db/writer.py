"""Group commit: records from concurrent requests share one transaction and one multi-row INSERT.

Predictions and feedback reports take the same path. When the database fails, records go to the durable spool
instead, and the writer replays the spool once the database answers again. Each request learns whether its
records were committed or spooled.

When the database answers but refuses some rows (db/refusals.py), the round is halved until each refused request
stands alone: the rest is committed at once, the refused records are set aside as dead letters (db/deadletter.py)
and their request is answered `spooled`, as they are kept durably. Replays do the same, so that no record blocks
the spool behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from db.codec import HeldFeedback
from db.deadletter import NO_PREDICTION
from db.engine import is_mysql_family
from db.feedback import (
    ConflictingFeedback,
    FeedbackReceipt,
    FeedbackRecord,
    ReportRaced,
    UnknownRecords,
    insert_feedback,
    report_feedback,
)
from db.refusals import Refused, commit_isolating, is_refusal
from db.spool import Spool
from db.store import PredictionRecord, RecordKey, insert_predictions, stored_ids

logger = logging.getLogger(__name__)
MAX_ROWS_PER_COMMIT = 20_000
REPLAY_CHUNK_ROWS = 1_000  # a live write waits behind at most one chunk of replay
FIRST_RETRY_SECONDS = 2.0  # after a failure, writes go straight to the spool this long, doubling per failure
MAX_RETRY_SECONDS = 16.0
FAST_FAILURE_SECONDS = 1.0  # a failure this quick is a dead connection: worth one retry on a fresh one
MAX_NAMED = 20  # feedback keys named in a log line
HELD_RECHECK_SECONDS = 5.0  # how often held feedback (its prediction not recorded yet) is looked at again
# A round of at least this many predictions is inserted in two halves on two connections at once, on SQLAlchemy's
# MySQL dialect (MySQL and MariaDB servers): both take concurrent writers (MariaDB inserts on two cores), and there
# a replay's INSERT IGNORE skips a half already committed. SQLite has one writer.
SPLIT_ROWS = 4_000
T = TypeVar("T")
G = TypeVar("G")


class WriteFailed(Exception):
    """Neither the database nor the spool could take a request's records; the message says why."""


@dataclass(frozen=True)
class WriteResult:
    """Where a request's records went; predictions' ids when committed and asked for, a committed report's
    receipt."""

    status: Literal["committed", "spooled"]
    ids: dict[RecordKey, int] = field(default_factory=dict)
    receipt: FeedbackReceipt | None = None


Outcome: TypeAlias = WriteResult | BaseException


@dataclass
class _Pending:
    loop: asyncio.AbstractEventLoop
    records: Sequence[object] = ()
    future: asyncio.Future[WriteResult] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def resolve(self, outcome: Outcome) -> None:
        """Hand the outcome to the waiting request, on its own event loop."""
        self.loop.call_soon_threadsafe(_settle, self.future, outcome)


@dataclass
class _Predictions(_Pending):
    records: list[PredictionRecord] = field(default_factory=list)
    want_ids: bool = False


@dataclass
class _Report(_Pending):
    records: list[FeedbackRecord] = field(default_factory=list)


P = TypeVar("P", bound=_Pending)


class _Raced(Exception):
    """A concurrent report committed first: roll the transaction back and check again."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index  # the report's place in its batch


def _settle(future: asyncio.Future[WriteResult], outcome: Outcome) -> None:
    if future.done():  # the request was cancelled (client gone); its records are stored regardless
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class GroupCommitWriter:
    """One thread per worker drains every pending write and commits them together.

    While one transaction commits, the next requests queue up; the next round takes them all: its predictions in
    one transaction, then its feedback reports in another. `write` and `write_feedback` return once their records
    are committed, or durably spooled when the database cannot take them. The thread keeps one connection open
    (no pool checkout, pre-ping or reset per commit); a write that fails fast (a connection the server closed
    while idle) is retried once on a fresh connection before the records are spooled. A round of `SPLIT_ROWS`
    predictions or more commits in two halves, the second on a helper thread's own connection; if either half
    fails, the whole round is spooled, and the replay (`INSERT IGNORE`) skips the half already committed.

    Live writes come first: the spool is replayed in chunks of `REPLAY_CHUNK_ROWS`, at most
    `replay_rows_per_second`, and never more than half of the thread's time. The thread survives any error:
    it logs it, fails the requests of that round, and carries on after a growing pause; `alive` says whether
    it runs (its death is a liveness failure).
    """

    def __init__(self, engine: Engine, spool: Spool, *, replay_rows_per_second: int = 20_000,
                 feedback_wait_seconds: float = 86_400.0) -> None:
        self._engine = engine
        self.spool = spool
        self._replay_interval = REPLAY_CHUNK_ROWS / replay_rows_per_second
        self._feedback_wait = timedelta(seconds=feedback_wait_seconds)
        self._next_held = 0.0
        self._line = _Line(engine)
        self._split = is_mysql_family(engine.dialect)
        self._second_line = _Line(engine)
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="prediction-writer-helper")
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
        return await self._submit(_Predictions(asyncio.get_running_loop(), records, want_ids))

    async def write_feedback(self, records: list[FeedbackRecord]) -> WriteResult:
        """Check and commit one report all or nothing, with its receipt; or spool it, unchecked, when the database
        is down (replay keeps a record's first variety and drops reports of unknown records).

        Raises UnknownRecords, ConflictingFeedback or ReportRaced (nothing stored), or WriteFailed.
        """
        return await self._submit(_Report(asyncio.get_running_loop(), records))

    async def _submit(self, pending: _Pending) -> WriteResult:
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
        """Commit the batch (predictions first), or spool it; every request hears the outcome, whatever happens."""
        failures = [self._resolve_all([p for p in batch if isinstance(p, _Predictions)], self._store_predictions),
                    self._resolve_all([p for p in batch if isinstance(p, _Report)], self._store_reports)]
        for failure in failures:
            if failure is not None:
                raise failure

    @staticmethod
    def _resolve_all(group: list[P], store: Callable[[list[P]], list[Outcome]]) -> Exception | None:
        """Resolve each request of `group` with what `store` made of it; an unexpected error fails them all and is
        returned, to be raised once every request of the round has its answer."""
        if not group:
            return None
        unexpected = None
        try:
            outcomes = store(group)
        except WriteFailed as failure:
            outcomes = [failure] * len(group)
        except Exception as exc:
            unexpected = exc
            outcomes = [WriteFailed(f"unexpected {type(exc).__name__}")] * len(group)
        for pending, outcome in zip(group, outcomes, strict=True):
            pending.resolve(outcome)
        return unexpected

    def _store_predictions(self, batch: list[_Predictions]) -> list[Outcome]:
        records = [record for pending in batch for record in pending.records]
        wanted = {p.records[0].request_id for p in batch if p.want_ids}

        def commit() -> list[Outcome]:
            ids = self._insert(records, wanted)
            return [_committed(pending, ids) for pending in batch]

        def isolate(refusal: SQLAlchemyError) -> list[Outcome]:
            del refusal  # of the plain INSERT: isolation inserts skipping duplicates (a half of a split round)
            results = commit_isolating(batch, self._insert_requests)
            refused = {id(p) for p, result in zip(batch, results, strict=True) if isinstance(result, Refused)}
            ids = self._line.transaction(lambda c: stored_ids(c, {p.records[0].request_id for p in batch
                                                                  if p.want_ids and id(p) not in refused}))
            return [self._set_aside(pending.records, result.reason, self.spool.dead_letters.add_predictions)
                    if isinstance(result, Refused) else _committed(pending, ids)
                    for pending, result in zip(batch, results, strict=True)]

        outcomes = self._commit_or_spool(commit, lambda: self.spool.append(records), f"{len(records)} prediction(s)",
                                         isolate)
        return [WriteResult("spooled")] * len(batch) if outcomes is None else outcomes

    def _insert_requests(self, batch: Sequence[_Predictions]) -> list[None]:
        """Commit some requests' records together, skipping any already stored (a half of a split round)."""
        records = [record for pending in batch for record in pending.records]
        self._line.transaction(lambda c: insert_predictions(c, records, skip_existing=True))
        return [None] * len(batch)

    def _store_reports(self, batch: list[_Report]) -> list[Outcome]:
        """Check and commit each report, or spool them all unchecked when the database fails."""
        records = [record for pending in batch for record in pending.records]

        def isolate(refusal: SQLAlchemyError) -> list[Outcome]:
            results = commit_isolating(batch, self._commit_reports, refusal)
            return [self._set_aside(pending.records, result.reason, self.spool.dead_letters.add_feedback)
                    if isinstance(result, Refused) else result for pending, result in zip(batch, results, strict=True)]

        outcomes = self._commit_or_spool(lambda: self._commit_reports(batch),
                                         lambda: self.spool.append_feedback(records),
                                         f"{len(records)} feedback record(s)", isolate)
        return [WriteResult("spooled")] * len(batch) if outcomes is None else outcomes

    @staticmethod
    def _set_aside(records: list[G], why: str, add: Callable[[list[G], str], None]) -> Outcome:
        """Set a refused request's records aside as dead letters: `spooled`, as they are kept durably."""
        logger.error("the database refused %d record(s) of one request, set aside as dead letters: %s",
                     len(records), why)
        try:
            add(records, why)
        except OSError as exc:
            logger.error("could not set refused records aside: %s", exc.strerror or exc)
            return WriteFailed(exc.strerror or str(exc))
        return WriteResult("spooled")

    def _commit_or_spool(self, commit: Callable[[], T], append: Callable[[], None], what: str,
                         isolate: Callable[[SQLAlchemyError], T]) -> T | None:
        """`commit()` while the database is taken to be up; on its failure, or while it is down, `append()` to the
        spool. When the database refuses some of the rows, `isolate(refusal)` commits the others and sets the
        refused ones aside. What `commit` (or `isolate`) returned, or None when spooled; WriteFailed when the spool
        cannot take it either."""
        if time.monotonic() >= self._database_down_until:
            try:
                try:
                    committed = commit()
                except SQLAlchemyError as exc:
                    if not is_refusal(exc):
                        raise
                    committed = isolate(exc)
            except SQLAlchemyError as exc:
                self._database_failed()
                logger.warning("database write failed, spooling %s: %s", what, _one_line(exc))
            else:
                self._retry_delay = FIRST_RETRY_SECONDS
                return committed
        try:
            append()
        except OSError as exc:
            logger.error("could not spool %s: %s", what, exc.strerror or exc)
            raise WriteFailed(exc.strerror or str(exc)) from exc
        return None

    def _commit_reports(self, batch: Sequence[_Report]) -> list[Outcome]:
        """The reports in one transaction, each checked against those before it. A report that a concurrent one
        (another worker's) raced is checked again in a new transaction, and refused if raced twice."""
        raced: set[int] = set()
        given_up: set[int] = set()
        while True:
            try:
                return self._line.transaction(lambda c: _check_and_insert(c, batch, given_up))
            except _Raced as race:
                (given_up if race.index in raced else raced).add(race.index)

    def _insert(self, records: list[PredictionRecord], wanted: set[str]) -> dict[RecordKey, int]:
        """Commit `records` (a large round in two halves at once: 10,000 rows 290-320 -> 160-210 ms on MariaDB);
        the ids of the requests in `wanted`."""
        if not self._split or len(records) < SPLIT_ROWS:
            return self._line.transaction(lambda c: _insert_and_read_ids(c, records, wanted))
        half = len(records) // 2
        second = self._helper.submit(self._second_line.transaction, lambda c: insert_predictions(c, records[half:]))
        try:
            self._line.transaction(lambda c: insert_predictions(c, records[:half]))
        finally:
            wait([second])
        second.result()  # the second half's error, if any
        return self._line.transaction(lambda c: stored_ids(c, wanted)) if wanted else {}

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
        held_due = started >= self._next_held
        if held_due:
            self._next_held = started + HELD_RECHECK_SECONDS
        try:
            replayed = self.spool.replay(self._replay_predictions, self._replay_feedback,
                                         chunk=REPLAY_CHUNK_ROWS, max_rows=max_rows,
                                         store_held=self._replay_held if held_due else None)
        except SQLAlchemyError as exc:
            self._database_failed()
            logger.warning("spool replay deferred, the database still fails: %s", _one_line(exc))
            return 0
        took = time.monotonic() - started
        # Next chunk: after as long again as this one took (live writes get at least half the time), and no
        # faster than the configured rate.
        self._next_replay = started + max(2 * took, self._replay_interval * replayed / REPLAY_CHUNK_ROWS)
        if replayed:
            logger.info("replayed %d spooled record(s) into the database", replayed)
        return replayed

    def _replay_predictions(self, records: list[PredictionRecord]) -> None:
        """Store spooled predictions (skipping those stored); a request the database refuses is set aside."""
        self._commit_setting_aside(
            _by_request(records),
            lambda part: self._line.transaction(lambda c: insert_predictions(c, part, skip_existing=True)),
            self.spool.dead_letters.add_predictions)

    def _replay_feedback(self, records: list[FeedbackRecord]) -> None:
        """Store spooled reports unchecked: a record already reported keeps its first variety. A report naming a
        prediction not recorded yet (by request_id and bean_index: it may be spooled on another pod) is held to be
        looked at again; one naming an unknown record id (ids are given to committed predictions only) is set
        aside as a dead letter."""
        unknown = self._store_feedback(records)
        by_id = [record for record in unknown if record.record_id is not None]
        if by_id:
            logger.warning("set aside %d spooled feedback record(s) naming no recorded prediction: %s",
                           len(by_id), _keys(by_id))
            self.spool.dead_letters.add_feedback(by_id, f"{NO_PREDICTION} (record id)")
        if waiting := [record for record in unknown if record.record_id is None]:
            logger.info("%d spooled feedback record(s) wait for their prediction (spooled elsewhere?): %s",
                        len(waiting), _keys(waiting))
            self._hold([HeldFeedback(record, _utc_now()) for record in waiting])

    def _replay_held(self, held: list[HeldFeedback]) -> None:
        """Store held reports whose prediction is recorded now; hold the others again, or set them aside once
        they have waited longer than the configured wait."""
        unknown = {id(record) for record in self._store_feedback([report.record for report in held])}
        self._hold([report for report in held if id(report.record) in unknown])

    def _hold(self, held: list[HeldFeedback]) -> None:
        expired = _utc_now() - self._feedback_wait
        if late := [report.record for report in held if report.since <= expired]:
            logger.warning("set aside %d feedback record(s) naming no recorded prediction after waiting %.0f s: %s",
                           len(late), self._feedback_wait.total_seconds(), _keys(late))
            self.spool.dead_letters.add_feedback(
                late, f"{NO_PREDICTION} after waiting {self._feedback_wait.total_seconds():.0f} s")
        self.spool.hold_feedback([report for report in held if report.since > expired])

    def _store_feedback(self, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
        """Insert feedback records, skipping those already reported; a record the database refuses is set aside.
        The records naming no recorded prediction (not written)."""
        unknown: list[FeedbackRecord] = []

        def insert(part: list[FeedbackRecord]) -> None:
            unknown.extend(self._line.transaction(lambda c: insert_feedback(c, part, skip_existing=True)).unknown)

        self._commit_setting_aside([[record] for record in records], insert, self.spool.dead_letters.add_feedback)
        return unknown

    @staticmethod
    def _commit_setting_aside(groups: list[list[G]], store: Callable[[list[G]], None],
                              set_aside: Callable[[list[G], str], None]) -> None:
        """`store` the groups' records; if the database refuses some, store the rest and set each refused group
        aside (durably, before the spool lets go of it). Outages are raised."""
        def commit(part: Sequence[list[G]]) -> list[None]:
            store([record for group in part for record in group])
            return [None] * len(part)

        try:
            commit(groups)
        except SQLAlchemyError as exc:
            if not is_refusal(exc):
                raise
            for group, result in zip(groups, commit_isolating(groups, commit, exc), strict=True):
                if isinstance(result, Refused):
                    logger.error("the database refused %d spooled record(s), set aside as dead letters: %s",
                                 len(group), result.reason)
                    set_aside(group, result.reason)

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
        self._helper.shutdown()

    def _disconnect(self) -> None:
        self._line.disconnect()
        self._helper.submit(self._second_line.disconnect).result()  # on the thread that uses it


class _Line:
    """One connection to the database, kept open by the one thread that writes on it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction; retry once on a fresh connection if it failed fast."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._engine.connect()
                with self._connection.begin():
                    return work(self._connection)
            except SQLAlchemyError as exc:
                if is_refusal(exc):  # the server answered: the connection is sound, and a retry would be refused
                    raise
                self.disconnect()
                # A slow failure is a timeout: the database is frozen or far away, and a retry would double
                # the wait of every request in the batch.
                if attempt == 2 or time.monotonic() - started > FAST_FAILURE_SECONDS:
                    raise
        raise AssertionError("unreachable")

    def disconnect(self) -> None:
        """Drop the connection (a failed one included); the next transaction opens a new one."""
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None


def _insert_and_read_ids(connection: Connection, records: list[PredictionRecord],
                         wanted: set[str]) -> dict[RecordKey, int]:
    insert_predictions(connection, records)
    return stored_ids(connection, wanted) if wanted else {}


def _committed(pending: _Predictions, ids: dict[RecordKey, int]) -> WriteResult:
    return WriteResult("committed", {r.key: ids[r.key] for r in pending.records} if pending.want_ids else {})


def _by_request(records: list[PredictionRecord]) -> list[list[PredictionRecord]]:
    """Consecutive records of one request, together: a request is stored whole or set aside whole."""
    groups: list[list[PredictionRecord]] = []
    for record in records:
        if groups and groups[-1][0].request_id == record.request_id:
            groups[-1].append(record)
        else:
            groups.append([record])
    return groups


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _check_and_insert(connection: Connection, batch: Sequence[_Report], given_up: set[int]) -> list[Outcome]:
    """Each report checked and stored all or nothing, in order; raises _Raced when a concurrent one got in first."""
    outcomes: list[Outcome] = []
    for index, pending in enumerate(batch):
        if index in given_up:
            outcomes.append(ReportRaced())
            continue
        try:
            receipt = report_feedback(connection, pending.records)
        except (UnknownRecords, ConflictingFeedback) as refused:  # raised before writing anything
            outcomes.append(refused)
            continue
        if receipt is None:
            raise _Raced(index)
        outcomes.append(WriteResult("committed", receipt=receipt))
    return outcomes


def _keys(records: list[FeedbackRecord]) -> str:
    keys = [str(record.key) for record in records]
    return ", ".join(keys[:MAX_NAMED]) + (f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else "")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
