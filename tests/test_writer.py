"""Group commit against real databases: concurrent writes share transactions, and every row lands once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.orm import Session

from db.base import Base
from db.models import Prediction
from db.spool import Spool
from db.store import PredictionRecord, insert_predictions, stored_ids
from db.writer import GroupCommitWriter, WriteFailed, WriteResult
from tests.servers import MySQLDatabase


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


@pytest.fixture(params=["sqlite", "mysql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path}/w.sqlite3")
    else:
        database: MySQLDatabase = request.getfixturevalue("mysql_db")
        engine = database.engine()
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return engine


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


def test_a_connection_the_server_dropped_is_replaced_without_spooling(mysql_db: MySQLDatabase, tmp_path: Path) -> None:
    engine = mysql_db.engine()
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
