"""The spool on a real filesystem: durable appends, ownership by lock, torn lines, idempotent replay, both kinds of
record, and spools left by the previous version."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from db.feedback import FeedbackRecord
from db.spool import Spool
from db.store import PredictionRecord

# A line as the previous version (predictions only) wrote it.
OLD_LINE = ('["0123abcd",2,"SIRA","drybean_svc:old","2026-11-01T10:20:30.123456",'
            '[1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0,11.0,12.0,13.0,14.0,15.0,16.0]]\n')


def _record(request_id: str, index: int = 0) -> PredictionRecord:
    return PredictionRecord(request_id, index, "CALI", "m:1", datetime(2026, 11, 24, 1, 2, 3, 456789),
                            tuple(float(i) + 0.1 for i in range(16)))


def _feedback(variety: str, **name: int | str) -> FeedbackRecord:
    return FeedbackRecord(variety, datetime(2026, 11, 24, 4, 5, 6, 789), **name)  # type: ignore[arg-type]


def _never(_records: Sequence[object]) -> None:
    raise AssertionError("no record of this kind is spooled here")


def test_records_round_trip_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = [_record("a", 0), _record("a", 1), _record("a", 2)._replace(flags=(False, None, True))]
    spool.append(records)
    assert spool.depth() == 3 and spool.pending()
    replayed: list[PredictionRecord] = []
    assert spool.replay(replayed.extend, _never) == 3
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
        Spool(tmp_path).replay(replayed.extend, _never)
        assert other.exists()


def test_a_failed_replay_keeps_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("kept")])

    def database_down(_records: list[PredictionRecord]) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        spool.replay(database_down, _never)
    assert spool.depth() == 1


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("whole")])
    spool.release()
    path = next(tmp_path.glob("*.jsonl"))
    path.write_text(path.read_text() + '["torn", 0, "CA')
    replayed: list[PredictionRecord] = []
    spool.replay(replayed.extend, _never)
    assert [r.request_id for r in replayed] == ["whole"]


def test_feedback_round_trips_and_is_replayed_after_every_prediction(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    reports = [_feedback("SIRA", record_id=7), _feedback("CALI", request_id="ab12", bean_index=3)]
    spool.append_feedback(reports[:1])
    spool.append([_record("p", 0), _record("p", 1)])
    spool.append_feedback(reports[1:])
    assert spool.depth() == 4
    stored: list[object] = []
    assert spool.replay(stored.extend, stored.extend) == 4
    assert stored == [_record("p", 0), _record("p", 1), *reports]
    assert spool.depth() == 0 and not spool.pending()


def test_feedback_waits_while_a_live_worker_still_holds_spooled_predictions(tmp_path: Path) -> None:
    worker = Spool(tmp_path)
    worker.append([_record("theirs")])  # still this live worker's file, locked
    other = Spool(tmp_path)
    other.append_feedback([_feedback("SIRA", request_id="theirs", bean_index=0)])
    stored: list[object] = []
    assert other.replay(stored.extend, stored.extend) == 0 and other.depth() == 2
    worker.release()
    assert other.replay(stored.extend, stored.extend) == 2
    assert [type(record) for record in stored] == [PredictionRecord, FeedbackRecord]


def test_a_chunked_replay_keeps_its_place_across_kinds(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("p", i) for i in range(3)])
    spool.append_feedback([_feedback("SIRA", record_id=i) for i in range(1, 4)])
    chunks: list[list[PredictionRecord] | list[FeedbackRecord]] = []
    while spool.replay(chunks.append, chunks.append, chunk=2, max_rows=2):
        pass
    assert [len(chunk) for chunk in chunks] == [2, 1, 2, 1]
    assert spool.depth() == 0


def test_a_spool_of_the_previous_version_is_replayed_as_predictions(tmp_path: Path) -> None:
    (tmp_path / "4242-0ld0f11e.jsonl").write_text(OLD_LINE)
    replayed: list[PredictionRecord] = []
    assert Spool(tmp_path).depth() == 1
    assert Spool(tmp_path).replay(replayed.extend, _never) == 1
    assert replayed == [PredictionRecord("0123abcd", 2, "SIRA", "drybean_svc:old",
                                         datetime(2026, 11, 1, 10, 20, 30, 123456),
                                         tuple(float(i) for i in range(1, 17)))]


def test_feedback_files_are_out_of_sight_of_the_previous_version(tmp_path: Path) -> None:
    """The previous version replays `*.jsonl` in the spool directory as predictions: feedback must not be there."""
    Spool(tmp_path).append_feedback([_feedback("SIRA", record_id=1)])
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_torn_feedback_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append_feedback([_feedback("BOMBAY", record_id=5)])
    spool.release()
    path = next(tmp_path.glob("*/*.jsonl"))
    path.write_text(path.read_text() + '{"variety":"SI')
    replayed: list[FeedbackRecord] = []
    spool.replay(_never, replayed.extend)
    assert replayed == [_feedback("BOMBAY", record_id=5)]


def test_the_size_limit_counts_both_kinds(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_record("p")])
    spool.max_bytes = spool.size() + 10
    with pytest.raises(OSError, match="limit"):
        spool.append_feedback([_feedback("SIRA", record_id=1)])
    assert spool.depth() == 1
