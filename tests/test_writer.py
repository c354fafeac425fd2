"""Group commit against real databases: concurrent writes share transactions, and every row lands once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.base import Base
from db.models import Prediction
from db.store import PredictionRecord, insert_predictions
from db.writer import GroupCommitWriter
from tests.servers import MySQLDatabase


def _records(request_id: str, n: int) -> list[PredictionRecord]:
    return [PredictionRecord(request_id, i, "SIRA", "m:1", datetime(2026, 1, 1), tuple(float(i) for i in range(16)))
            for i in range(n)]


async def _write_concurrently(engine: Engine, requests: int, per_request: int) -> tuple[list[list[int]], int]:
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", count)
    writer = GroupCommitWriter(sessionmaker(engine))
    try:
        batches = [_records(f"req{r:04d}", per_request) for r in range(requests)]
        results = await asyncio.gather(*(writer.write(batch) for batch in batches))
    finally:
        writer.close()
    ids = [[result[record.key] for record in batch] for batch, result in zip(batches, results, strict=True)]
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


def test_concurrent_writes_are_committed_together_and_each_gets_its_ids(engine: Engine) -> None:
    ids, commits = asyncio.run(_write_concurrently(engine, requests=100, per_request=3))
    flat = [i for batch in ids for i in batch]
    assert len(set(flat)) == 300
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 300
        stored = dict(session.execute(select(Prediction.id, Prediction.request_id)).all())
    assert all(stored[i] == f"req{r:04d}" for r, batch in enumerate(ids) for i in batch)
    assert commits < 100, "writes queued during a commit should share the next one"


def test_a_failed_commit_fails_every_waiting_write(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/no-table.sqlite3")  # no schema: every insert fails

    async def attempt() -> None:
        writer = GroupCommitWriter(sessionmaker(engine))
        try:
            await writer.write(_records("r", 1))
        finally:
            writer.close()

    with pytest.raises(SQLAlchemyError):
        asyncio.run(attempt())


def test_replaying_records_is_idempotent(engine: Engine) -> None:
    records = _records("replayed", 4)
    with sessionmaker(engine).begin() as session:
        first = insert_predictions(session, records)
    with sessionmaker(engine).begin() as session:
        second = insert_predictions(session, [*records, *_records("new", 1)], skip_existing=True)
    assert {k: second[k] for k in first} == first
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 5
