"""Issue #19, case 9: no acknowledged record is lost to a replay racing the creation of a spool file.

Real processes on a real spool directory: writers append one record at a time, each in a new file (as after every
replay of their own), and count a record as acknowledged once `append` returned; a replayer replays in a tight
loop meanwhile. Every acknowledged record must come out of a replay.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import datetime
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from db.spool import Spool
from db.store import PredictionRecord

pytestmark = pytest.mark.system

RUNS = 20
WRITERS = 3
APPENDS = 50  # per writer and run


def _record(request_id: str) -> PredictionRecord:
    return PredictionRecord(request_id, 0, "SIRA", "m:1", datetime(2026, 1, 1), tuple(float(i) for i in range(16)))


def _write(directory: Path, writer: int, acknowledged: Path) -> None:
    spool = Spool(directory)
    done = []
    for index in range(APPENDS):
        spool.append([_record(f"w{writer}-{index}")])
        done.append(f"w{writer}-{index}")
        spool.release()  # the next append creates a new file
    acknowledged.write_text("\n".join(done))


def _replay(directory: Path, stop: Event, replayed: Path) -> None:
    spool = Spool(directory)
    seen: list[PredictionRecord] = []
    while not stop.is_set():
        spool.replay(seen.extend, seen.extend)
    spool.replay(seen.extend, seen.extend)
    replayed.write_text("\n".join(record.request_id for record in seen))


def _run(directory: Path) -> tuple[set[str], set[str]]:
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    replayer = context.Process(target=_replay, args=(directory, stop, directory.parent / "replayed"))
    replayer.start()
    writers = [context.Process(target=_write, args=(directory, n, directory.parent / f"acknowledged-{n}"))
               for n in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
    stop.set()
    replayer.join(60)
    assert [process.exitcode for process in [*writers, replayer]] == [0] * (WRITERS + 1)
    acknowledged = {line for n in range(WRITERS)
                    for line in (directory.parent / f"acknowledged-{n}").read_text().splitlines()}
    replayed = set((directory.parent / "replayed").read_text().splitlines())
    leftover: list[PredictionRecord] = []
    Spool(directory).replay(leftover.extend, leftover.extend)
    return acknowledged, replayed | {record.request_id for record in leftover}


def test_no_acknowledged_record_is_lost_to_a_racing_replay(tmp_path: Path) -> None:
    started = time.monotonic()
    lost = []
    for run in range(RUNS):
        acknowledged, replayed = _run(tmp_path / f"run{run}" / "spool")
        assert len(acknowledged) == WRITERS * APPENDS
        lost.append(len(acknowledged - replayed))
    assert lost == [0] * RUNS, f"acknowledged records lost per run: {lost}"
    assert time.monotonic() - started < 60
