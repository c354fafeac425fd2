"""Group commit against real databases: concurrent writes share transactions, and every row lands once; feedback
reports take the same path, checked when the database answers, spooled and replayed when it does not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.orm import Session

import db.writer
from db.base import Base
from db.deadletter import NO_PREDICTION
from db.feedback import (
    ConflictingFeedback,
    FeedbackReceipt,
    FeedbackRecord,
    ReportRaced,
    UnknownRecords,
    report_feedback,
)
from db.models import FEATURE_COLUMNS, Feedback, Prediction
from db.spool import Spool
from db.store import ROWS_PER_STATEMENT, PredictionRecord, insert_predictions, stored_ids
from db.writer import GroupCommitWriter, WriteFailed, WriteResult
from tests.servers import MySQLDatabase

T = TypeVar("T")


def _records(request_id: str, n: int) -> list[PredictionRecord]:
    return [PredictionRecord(request_id, i, "SIRA", "m:1", datetime(2026, 1, 1), tuple(float(i) for i in range(16)))
            for i in range(n)]


async def _write_concurrently(engine: Engine, spool: Spool, requests: int,
                              per_request: int) -> tuple[list[list[int]], int]:
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", count)
    writer = GroupCommitWriter(engine, spool)
    try:
        batches = [_records(f"req{r:04d}", per_request) for r in range(requests)]
        results = await asyncio.gather(*(writer.write(batch, want_ids=True) for batch in batches))
    finally:
        writer.close()
    assert {result.status for result in results} == {"committed"}
    ids = [[result.ids[record.key] for record in batch] for batch, result in zip(batches, results, strict=True)]
    return ids, commits


# Both names SQLAlchemy gives MySQL-family servers (issue #19, case 11): each gets every protection.
MYSQL_SCHEMES = ["mysql+pymysql", "mariadb+pymysql"]


def mysql_engine(database: MySQLDatabase, scheme: str) -> Engine:
    """An engine on the test database, through the URL scheme given."""
    return create_engine(database.url.set(drivername=scheme))


@pytest.fixture(params=["sqlite", *(pytest.param(scheme, marks=pytest.mark.database) for scheme in MYSQL_SCHEMES)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path}/w.sqlite3")
    else:
        engine = mysql_engine(request.getfixturevalue("mysql_db"), request.param)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()  # no idle connection left for a later test to find (and KILL) in the processlist


def test_concurrent_writes_are_committed_together_and_each_gets_its_ids(engine: Engine, tmp_path: Path) -> None:
    ids, commits = asyncio.run(_write_concurrently(engine, Spool(tmp_path / "spool"), requests=100, per_request=3))
    flat = [i for batch in ids for i in batch]
    assert len(set(flat)) == 300
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 300
        stored = dict(session.execute(select(Prediction.id, Prediction.request_id)).all())
    assert all(stored[i] == f"req{r:04d}" for r, batch in enumerate(ids) for i in batch)
    assert commits < 100, "writes queued during a commit should share the next one"


def test_writes_the_database_refuses_are_spooled_then_replayed_exactly_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/late.sqlite3")  # no table yet: every insert fails
    spool = Spool(tmp_path / "spool")

    async def write_twice_then_create_the_table() -> list[WriteResult]:
        writer = GroupCommitWriter(engine, spool)
        try:
            results = [await writer.write(_records("a", 2)), await writer.write(_records("b", 3))]
            assert spool.depth() == 5
            Base.metadata.create_all(engine)
            for _ in range(100):  # the writer retries every RETRY_SECONDS
                if spool.depth() == 0:
                    break
                await asyncio.sleep(0.1)
            return results
        finally:
            writer.close()

    results = asyncio.run(write_twice_then_create_the_table())
    assert [result.status for result in results] == ["spooled", "spooled"]
    with Session(engine) as session:
        stored = session.execute(select(Prediction.request_id, func.count()).group_by(Prediction.request_id)).all()
    assert sorted(stored) == [("a", 2), ("b", 3)]
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_a_write_neither_database_nor_spool_can_take_fails(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/no-table.sqlite3")
    spool = Spool(tmp_path / "spool")
    (tmp_path / "spool").rmdir()
    (tmp_path / "spool").write_text("a file where the spool directory was")

    async def attempt() -> None:
        writer = GroupCommitWriter(engine, spool)
        try:
            await writer.write(_records("r", 1))
        finally:
            writer.close()

    with pytest.raises(WriteFailed):
        asyncio.run(attempt())


def test_every_value_is_stored_exactly_in_statements_of_any_size(engine: Engine) -> None:
    """Features round-trip bit for bit; strings that need escaping are stored as given; more rows than one
    statement takes are all stored (MySQL's statements are built by db/store.py, not by the driver)."""
    rng = np.random.default_rng(11)
    magnitudes = 10.0 ** rng.integers(-12, 9, size=(ROWS_PER_STATEMENT + 7, 16))
    features = rng.standard_normal((ROWS_PER_STATEMENT + 7, 16)) * magnitudes
    tricky = "m:1' OR '1'='1 \\ \" % _ ; -- ä"
    created = datetime(2026, 11, 24, 16, 37, 21)
    records = [PredictionRecord("exact", index, "SIRA", tricky, created, tuple(row))
               for index, row in enumerate(features.tolist())]
    with engine.begin() as connection:
        insert_predictions(connection, [])  # nothing to do, and no statement to fail
        insert_predictions(connection, records)
    with Session(engine) as session:
        stored = session.scalars(select(Prediction).where(Prediction.request_id == "exact")
                                 .order_by(Prediction.bean_index)).all()
    assert [row.bean_index for row in stored] == list(range(len(records)))
    assert {(row.model_tag, row.name, row.created_at) for row in stored} == {(tricky, "SIRA", created)}
    assert [[getattr(row, column) for column in FEATURE_COLUMNS.values()] for row in stored] == features.tolist()


def test_each_records_flags_are_stored_as_assessed(engine: Engine) -> None:
    """Which answers to doubt (issue #22) stay with each record: three booleans, or nulls where not assessed."""
    flags = [(True, True, False), (False, True, True), (True, None, True), None]
    records = [record._replace(flags=bean_flags) for record, bean_flags in zip(_records("flags", 4), flags,
                                                                                strict=True)]
    with engine.begin() as connection:
        insert_predictions(connection, records)
    with Session(engine) as session:
        stored = session.scalars(select(Prediction).where(Prediction.request_id == "flags")
                                 .order_by(Prediction.bean_index)).all()
    assert [(row.consistent, row.in_distribution, row.needs_review) for row in stored] == [
        *flags[:3], (None, None, None)]


def test_replaying_records_is_idempotent(engine: Engine) -> None:
    records = _records("replayed", 4)
    with engine.begin() as connection:
        insert_predictions(connection, records)
        first = stored_ids(connection, {"replayed"})
    with engine.begin() as connection:
        insert_predictions(connection, [*records, *_records("new", 1)], skip_existing=True)
        second = stored_ids(connection, {"replayed", "new"})
    assert {k: second[k] for k in first} == first and len(second) == 5
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 5


@pytest.mark.database
@pytest.mark.parametrize("scheme", MYSQL_SCHEMES)
def test_a_connection_the_server_dropped_is_replaced_without_spooling(mysql_db: MySQLDatabase, tmp_path: Path,
                                                                      scheme: str) -> None:
    engine = mysql_engine(mysql_db, scheme)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    spool = Spool(tmp_path / "spool")

    async def write_kill_write() -> list[WriteResult]:
        writer = GroupCommitWriter(engine, spool)
        try:
            first = await writer.write(_records("before", 1))
            with engine.connect() as admin:  # the server ends the writer's idle connection, as wait_timeout does
                for (thread_id,) in admin.execute(text("SELECT id FROM information_schema.processlist "
                                                       "WHERE db = DATABASE() AND id <> CONNECTION_ID()")):
                    admin.execute(text(f"KILL {int(thread_id)}"))
            return [first, await writer.write(_records("after", 1))]
        finally:
            writer.close()

    assert [result.status for result in asyncio.run(write_kill_write())] == ["committed", "committed"]
    assert spool.depth() == 0


def _statements_by_connection(engine: Engine) -> dict[int, list[str]]:
    """The statements each server connection (by its id) executes from now on, their first word each."""
    executed: dict[int, list[str]] = {}

    def note(_conn: object, cursor: Any, statement: str, *_args: object) -> None:
        executed.setdefault(cursor.connection.thread_id(), []).append(statement.split(maxsplit=1)[0])

    event.listen(engine, "before_cursor_execute", note)
    return executed


@pytest.mark.database
@pytest.mark.parametrize("scheme", MYSQL_SCHEMES)
def test_a_large_round_is_inserted_in_halves_on_two_connections(mysql_db: MySQLDatabase, tmp_path: Path,
                                                                scheme: str) -> None:
    engine = mysql_engine(mysql_db, scheme)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    records = _records("large", db.writer.SPLIT_ROWS + 1)
    executed = _statements_by_connection(engine)
    result = _with_writer(engine, Spool(tmp_path / "spool"), lambda writer: writer.write(records, want_ids=True))
    assert result.status == "committed"
    inserting = [connection for connection, statements in executed.items() if "INSERT" in statements]
    assert len(inserting) == 2
    with Session(engine) as session:
        stored = dict(session.execute(select(Prediction.bean_index, Prediction.id)
                                      .where(Prediction.request_id == "large")).all())
    assert stored == {record.bean_index: result.ids[record.key] for record in records}


@pytest.mark.database
@pytest.mark.parametrize("scheme", MYSQL_SCHEMES)
def test_a_large_round_half_committed_is_completed_exactly_once(mysql_db: MySQLDatabase, tmp_path: Path,
                                                                scheme: str) -> None:
    """One half's INSERT meets a duplicate key: a refusal of that statement, not an outage; the round is inserted
    again skipping duplicates, and committed whole (case 11: on mariadb:// it used to wedge on the duplicate)."""
    engine = mysql_engine(mysql_db, scheme)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    records = _records("halves", db.writer.SPLIT_ROWS)
    with engine.begin() as connection:  # the second half's last bean is there already: its INSERT fails
        insert_predictions(connection, records[-1:])
    spool = Spool(tmp_path / "spool")

    async def write_and_wait(writer: GroupCommitWriter) -> WriteResult:
        result = await writer.write(records)
        await _wait_until_drained(spool)
        return result

    assert _with_writer(engine, spool, write_and_wait).status == "committed"
    assert spool.dead_letters.count() == 0
    with Session(engine) as session:
        indexes = session.scalars(select(Prediction.bean_index).where(Prediction.request_id == "halves")).all()
    assert sorted(indexes) == list(range(len(records)))


def _with_writer(engine: Engine, spool: Spool, scenario: Callable[[GroupCommitWriter], Awaitable[T]],
                 **settings: Any) -> T:
    """Run `scenario` against a writer, closed (and so drained) afterwards."""
    async def run() -> T:
        writer = GroupCommitWriter(engine, spool, **settings)
        try:
            return await scenario(writer)
        finally:
            writer.close()

    return asyncio.run(run())


def _report(variety: str, request_id: str, index: int = 0) -> list[FeedbackRecord]:
    return [FeedbackRecord(variety, datetime(2026, 1, 2), request_id=request_id, bean_index=index)]


def _feedback_rows(engine: Engine) -> list[tuple[str | None, int | None, str]]:
    with Session(engine) as session:
        return [(request_id, index, variety) for request_id, index, variety in session.execute(
            select(Feedback.request_id, Feedback.bean_index, Feedback.variety).order_by(Feedback.id))]


async def _wait_until_drained(spool: Spool, seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):  # the writer retries after FIRST_RETRY_SECONDS
        if spool.depth() == 0:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{spool.depth()} record(s) still spooled")


def test_feedback_is_checked_and_committed_by_the_writer(engine: Engine, tmp_path: Path) -> None:
    async def scenario(writer: GroupCommitWriter) -> list[WriteResult | BaseException]:
        ids = (await writer.write(_records("beans", 3), want_ids=True)).ids
        first = await writer.write_feedback([*_report("SIRA", "beans", 0),
                                             FeedbackRecord("CALI", datetime(2026, 1, 2), record_id=ids[("beans", 1)])])
        # Concurrent reports share a round; each is checked against those before it.
        return [first, *await asyncio.gather(
            writer.write_feedback(_report("SIRA", "beans", 0)),  # the same fact again
            writer.write_feedback(_report("BOMBAY", "beans", 2)),
            writer.write_feedback(_report("HOROZ", "beans", 2)),  # contradicts the one before it
            writer.write_feedback(_report("SIRA", "nobody", 0)),
            return_exceptions=True)]

    first, again, bombay, horoz, unknown = _with_writer(engine, Spool(tmp_path / "spool"), scenario)
    assert first == WriteResult("committed", receipt=FeedbackReceipt(recorded=2, already_known=0))
    assert again == WriteResult("committed", receipt=FeedbackReceipt(recorded=0, already_known=1))
    assert bombay == WriteResult("committed", receipt=FeedbackReceipt(recorded=1, already_known=0))
    assert isinstance(horoz, ConflictingFeedback) and horoz.conflicts[0].stored == "BOMBAY"
    assert isinstance(unknown, UnknownRecords) and unknown.keys == [("nobody", 0)]
    assert _feedback_rows(engine) == [("beans", 0, "SIRA"), (None, None, "CALI"), ("beans", 2, "BOMBAY")]


def test_feedback_the_database_refuses_is_spooled_then_replayed_after_its_predictions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/late.sqlite3")  # no table yet: every insert fails
    spool = Spool(tmp_path / "spool")

    async def scenario(writer: GroupCommitWriter) -> list[WriteResult]:
        results = [await writer.write_feedback(_report("SIRA", "early", 0)),  # spooled before its prediction
                   await writer.write(_records("early", 2)),
                   await writer.write_feedback(_report("CALI", "early", 0)),  # a conflict: the first one stays
                   await writer.write_feedback(_report("CALI", "early", 1)),
                   await writer.write_feedback(_report("SIRA", "nobody", 0))]  # set aside at replay
        assert spool.depth() == 6
        Base.metadata.create_all(engine)
        await _wait_until_drained(spool)
        return results

    with caplog.at_level(logging.WARNING, logger="db.writer"):
        results = _with_writer(engine, spool, scenario, feedback_wait_seconds=0)  # no waiting for "nobody"
    assert {result.status for result in results} == {"spooled"} and all(r.receipt is None for r in results)
    assert _feedback_rows(engine) == [("early", 0, "SIRA"), ("early", 1, "CALI")]
    assert any("naming no recorded prediction" in r.message and "nobody" in r.message for r in caplog.records)
    [letter] = spool.dead_letters.letters()
    assert letter.kind == "feedback" and '"request_id":"nobody"' in letter.line
    assert letter.reason.startswith(NO_PREDICTION)
    assert spool.depth() == 0 and not spool.pending()


def test_spooled_feedback_is_drained_at_close(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with engine.begin() as connection:
        insert_predictions(connection, _records("drained", 1))
    spool.append_feedback(_report("DERMASON", "drained", 0))  # left by a previous run
    spool.release()

    async def scenario(writer: GroupCommitWriter) -> None:
        writer.close(drain_seconds=10)  # before its first replay is due

    _with_writer(engine, spool, scenario)
    assert spool.depth() == 0
    assert _feedback_rows(engine) == [("drained", 0, "DERMASON")]


def test_feedback_neither_database_nor_a_full_spool_can_take_fails(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/no-table.sqlite3")
    spool = Spool(tmp_path / "spool", max_bytes=10)

    async def scenario(writer: GroupCommitWriter) -> WriteResult:
        return await writer.write_feedback(_report("SIRA", "r", 0))

    with pytest.raises(WriteFailed, match="limit"):
        _with_writer(engine, spool, scenario)


def test_a_report_raced_by_another_worker_is_checked_again_then_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/raced.sqlite3")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        insert_predictions(connection, _records("raced", 2))
    races = {"once": 1, "always": 2}  # races left, by the variety reported

    def racing(connection: db.writer.Connection, records: list[FeedbackRecord]) -> FeedbackReceipt | None:
        if races.get(records[0].variety, 0):
            races[records[0].variety] -= 1
            return None  # as when another worker's INSERT got in between the check and ours
        return report_feedback(connection, records)

    monkeypatch.setattr(db.writer, "report_feedback", racing)

    async def scenario(writer: GroupCommitWriter) -> list[WriteResult | BaseException]:
        return list(await asyncio.gather(writer.write_feedback([FeedbackRecord("once", datetime(2026, 1, 2),
                                                                          request_id="raced", bean_index=0)]),
                                    writer.write_feedback([FeedbackRecord("always", datetime(2026, 1, 2),
                                                                          request_id="raced", bean_index=1)]),
                                    return_exceptions=True))

    once, always = _with_writer(engine, Spool(tmp_path / "spool"), scenario)
    assert once == WriteResult("committed", receipt=FeedbackReceipt(recorded=1, already_known=0))
    assert isinstance(always, ReportRaced)
    assert _feedback_rows(engine) == [("raced", 0, "once")]


def test_an_unexpected_error_fails_the_round_and_the_writer_carries_on(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_connection: object, _records: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(db.writer, "report_feedback", broken)

    async def scenario(writer: GroupCommitWriter) -> list[WriteResult | BaseException]:
        outcomes = await asyncio.gather(writer.write(_records("alongside", 1)),
                                        writer.write_feedback(_report("SIRA", "alongside", 0)),
                                        return_exceptions=True)
        monkeypatch.undo()
        return [*outcomes, await writer.write_feedback(_report("SIRA", "alongside", 0))]

    predictions, failed, retried = _with_writer(engine, Spool(tmp_path / "spool"), scenario)
    assert predictions == WriteResult("committed")
    assert isinstance(failed, WriteFailed) and "RuntimeError" in str(failed)
    assert retried == WriteResult("committed", receipt=FeedbackReceipt(recorded=1, already_known=0))
