"""The spool on a real filesystem: durable appends, ownership by lock, torn lines, idempotent replay."""

from __future__ import annotations

import fcntl
from datetime import datetime
from pathlib import Path

import pytest

from db.spool import Spool
from db.store import PredictionRecord


def _record(request_id: str, index: int = 0) -> PredictionRecord:
    return PredictionRecord(request_id, index, "CALI", "m:1", datetime(2026, 11, 24, 1, 2, 3, 456789),
                            tuple(float(i) + 0.1 for i in range(16)))


def test_records_round_trip_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = [_record("a", 0), _record("a", 1)]
    spool.append(records)
    assert spool.depth() == 2 and spool.pending()
    replayed: list[PredictionRecord] = []
    assert spool.replay(replayed.extend) == 2
    assert replayed == records
    assert spool.depth() == 0 and not spool.pending()


def test_a_live_workers_file_is_not_replayed_by_another(tmp_path: Path) -> None:
    other = tmp_path / "123-other.jsonl"
    Spool(tmp_path).append([_record("mine")])
    Spool(tmp_path).release()
    other.write_text("")
    with other.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another worker appending
        replayed: list[PredictionRecord] = []
        Spool(tmp_path).replay(replayed.extend)
        assert other.exists()


def test_a_failed_replay_keeps_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("kept")])

    def database_down(_records: list[PredictionRecord]) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        spool.replay(database_down)
    assert spool.depth() == 1


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("whole")])
    spool.release()
    path = next(tmp_path.glob("*.jsonl"))
    path.write_text(path.read_text() + '["torn", 0, "CA')
    replayed: list[PredictionRecord] = []
    spool.replay(replayed.extend)
    assert [r.request_id for r in replayed] == ["whole"]
