"""rollout/evidence.py on SQLite and on MariaDB: hand-made pairs in both directions, some of requests never
recorded (store: false), some with a reported true variety, beside other models' pairs; every answer equals
rollout/compare.py and numpy computed directly on the same labels and times."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, event, insert, text

from data.schema import CLASSES
from db import migrate
from db.feedback import FeedbackRecord, insert_feedback
from db.models import ShadowPrediction
from db.store import PredictionRecord, insert_predictions
from rollout.compare import compare, tally
from rollout.evidence import compare_models
from rollout.schemas import Latency, ModelComparison
from tests.servers import MySQLDatabase

CHAMPION, CHALLENGER, OTHER = "drybean_svc:champion", "drybean_svc:challenger", "drybean_svc:other"
START = datetime(2026, 3, 1)  # request i was made at START + i minutes
REQUESTS = 300
MIN_COUNT = 30


@dataclass(frozen=True)
class Pair:
    """One stored row of shadow_predictions, and the true variety reported for its bean (None: none)."""

    id: int
    request_id: str
    bean_index: int
    model_tag: str
    name: str
    seconds: float
    answered_tag: str
    answered_name: str
    answered_seconds: float
    created_at: datetime
    truth: str | None

    def row(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key != "truth"}


def noisy(truth: str, right: float, rng: random.Random) -> str:
    """`truth`, or with probability 1 - `right` a random variety."""
    return truth if rng.random() < right else rng.choice(CLASSES)


def make_pairs() -> tuple[list[Pair], list[PredictionRecord], list[FeedbackRecord]]:
    """Requests of 1 to 6 beans: answered by the champion with the challenger in shadow, by the challenger as a
    canary with the champion's second opinion, or pairs of other models; a fifth never recorded (store: false);
    two thirds of the recorded beans reported. The champion is right 90% of the time and takes 1 to 4 ms, the
    challenger 75% and 5 to 20 ms."""
    rng = random.Random(21)
    pairs: list[Pair] = []
    records: list[PredictionRecord] = []
    reports: list[FeedbackRecord] = []
    for i in range(REQUESTS):
        request_id, created_at = f"{i:032x}", START + timedelta(minutes=i)
        answered, scored = rng.choice([(CHAMPION, CHALLENGER)] * 4 + [(CHALLENGER, CHAMPION)] * 3
                                      + [(CHAMPION, OTHER), (OTHER, CHALLENGER)])
        times = {model: rng.uniform(0.001, 0.004) if model == CHAMPION else rng.uniform(0.005, 0.02)
                 for model in (answered, scored)}
        stored = rng.random() < 0.8
        for bean in range(rng.randint(1, 6)):
            truth = rng.choice(CLASSES)
            label = {model: noisy(truth, 0.9 if model == CHAMPION else 0.75, rng) for model in (answered, scored)}
            reported = stored and rng.random() < 2 / 3
            pairs.append(Pair(len(pairs) + 1, request_id, bean, scored, label[scored], times[scored], answered,
                              label[answered], times[answered], created_at, truth if reported else None))
            if stored:
                records.append(PredictionRecord(request_id, bean, label[answered], answered, created_at,
                                                tuple(float(f) for f in range(16))))
            if reported:
                reports.append(FeedbackRecord(truth, created_at, request_id=request_id, bean_index=bean))
    # A recorded bean without a pair, and one with a report: they count for nothing here.
    records.append(PredictionRecord("f" * 32, 0, "SIRA", CHAMPION, START, tuple(float(f) for f in range(16))))
    reports.append(FeedbackRecord("SIRA", START, request_id="f" * 32, bean_index=0))
    return pairs, records, reports


PAIRS, RECORDS, REPORTS = make_pairs()


def expected(champion: str, challenger: str, *, since: datetime | None = None,
             limit: int = 10 ** 9) -> ModelComparison:
    """The comparison computed directly from the pairs as made, with rollout/compare.py and numpy."""
    window = [pair for pair in PAIRS if {pair.model_tag, pair.answered_tag} == {champion, challenger}
              and (since is None or pair.created_at >= since)][-limit:]
    oriented = [(pair.answered_name, pair.name, pair.answered_seconds, pair.seconds) if pair.answered_tag == champion
                else (pair.name, pair.answered_name, pair.seconds, pair.answered_seconds) for pair in window]
    report = compare(tally([o[0] for o in oriented], [o[1] for o in oriented], [pair.truth for pair in window]),
                     min_count=MIN_COUNT, champion=champion, challenger=challenger)
    per_request = {pair.request_id: o[2:] for pair, o in zip(window, oriented, strict=True)}

    def latency(seconds: list[float]) -> Latency:
        if not seconds:
            return Latency(requests=0, median_ms=None, p99_ms=None)
        return Latency(requests=len(seconds), median_ms=float(np.median(seconds)) * 1000,
                       p99_ms=float(np.percentile(seconds, 99)) * 1000)

    return ModelComparison(**report.model_dump(), since=since, limit=limit, latency={
        "champion": latency([times[0] for times in per_request.values()]),
        "challenger": latency([times[1] for times in per_request.values()])})


def filled(engine: Engine) -> Engine:
    """`engine`'s database migrated, holding the pairs, their records and the reports."""
    migrate.upgrade(engine)
    with engine.begin() as connection:
        insert_predictions(connection, RECORDS)
        insert_feedback(connection, REPORTS)
        connection.execute(insert(ShadowPrediction), [pair.row() for pair in PAIRS])
    return engine


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = filled(create_engine(f"sqlite:///{tmp_path_factory.mktemp('evidence') / 'drybeans.db'}"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def mariadb(mysql_db: MySQLDatabase) -> Iterator[Engine]:
    engine = filled(create_engine(mysql_db.url, connect_args={"init_command": "SET time_zone = '+00:00'"}))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.database)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The filled database on either server."""
    return request.getfixturevalue(request.param)


def compared(engine: Engine, champion: str = CHAMPION, challenger: str = CHALLENGER, *, since: datetime | None = None,
             limit: int = 10 ** 9) -> ModelComparison:
    with engine.connect() as connection:
        return compare_models(connection, champion, challenger, since=since, limit=limit, min_count=MIN_COUNT)


def test_every_pair_of_both_directions_with_the_truth_where_reported(engine: Engine) -> None:
    report = compared(engine)
    assert report == expected(CHAMPION, CHALLENGER)
    # Not a trivial case: both directions, unrecorded requests, reports on some, a significant verdict.
    window = [pair for pair in PAIRS if {pair.model_tag, pair.answered_tag} == {CHAMPION, CHALLENGER}]
    assert {pair.answered_tag for pair in window} == {CHAMPION, CHALLENGER}
    unrecorded = {pair.request_id for pair in PAIRS} - {record.request_id for record in RECORDS}
    assert any(pair.request_id in unrecorded for pair in window)
    assert 0 < report.counts.labelled < report.counts.scored == len(window)
    assert report.verdict == "worse" and 0.5 < report.agreement < 0.9
    assert report.latency["champion"].requests == len({pair.request_id for pair in window})
    assert report.latency["champion"].p99_ms < 4 < 5 < report.latency["challenger"].median_ms


def test_the_champion_is_always_the_first_label_whichever_model_answered(engine: Engine) -> None:
    swapped = compared(engine, CHALLENGER, CHAMPION)
    assert swapped == expected(CHALLENGER, CHAMPION)
    straight = compared(engine)
    assert swapped.flips.counts == np.transpose(straight.flips.counts).tolist()
    assert (swapped.mcnemar.b, swapped.mcnemar.c) == (straight.mcnemar.c, straight.mcnemar.b)
    assert swapped.latency == {"champion": straight.latency["challenger"], "challenger": straight.latency["champion"]}
    assert swapped.verdict == "better"


@pytest.mark.parametrize("limit", [1, 333, 1000])
def test_since_and_limit_keep_the_newest_pairs(engine: Engine, limit: int) -> None:
    since = START + timedelta(minutes=REQUESTS // 3)
    report = compared(engine, since=since, limit=limit)  # 333 cuts through a request; 1000 is more than there are
    assert report == expected(CHAMPION, CHALLENGER, since=since, limit=limit)
    assert report.counts.scored == min(limit, expected(CHAMPION, CHALLENGER, since=since).counts.scored)
    assert (report.since, report.limit) == (since, limit)


def test_since_with_an_offset_is_read_as_utc(engine: Engine) -> None:
    naive = START + timedelta(minutes=REQUESTS // 2)
    aware = naive.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    report = compared(engine, since=aware)
    assert report.model_dump(exclude={"since"}) == expected(CHAMPION, CHALLENGER, since=naive).model_dump(
        exclude={"since"})


def test_another_pair_of_models_and_an_empty_window(engine: Engine) -> None:
    assert compared(engine, CHAMPION, OTHER) == expected(CHAMPION, OTHER)
    assert compared(engine, CHAMPION, OTHER).counts.scored > 0
    empty = compared(engine, CHAMPION, "drybean_svc:never", since=START)
    assert empty == expected(CHAMPION, "drybean_svc:never", since=START)
    assert (empty.counts.scored, empty.agreement, empty.verdict) == (0, None, "not enough labelled beans")
    assert empty.latency["champion"] == Latency(requests=0, median_ms=None, p99_ms=None)
    late = compared(engine, since=START + timedelta(days=1))
    assert late.counts.scored == 0 and late.latency["challenger"].requests == 0


@pytest.mark.database
def test_three_statements_and_the_truth_joined_by_unique_keys_on_mariadb(mariadb: Engine) -> None:
    statements: list[str] = []

    def executed(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(cursor.mogrify(statement, parameters))

    event.listen(mariadb, "before_cursor_execute", executed)
    try:
        compared(mariadb, since=START, limit=100)
    finally:
        event.remove(mariadb, "before_cursor_execute", executed)
    assert len(statements) == 3  # where the window begins, the counts, the requests' times
    with mariadb.connect() as connection:
        plans = [{row["table"]: row for row in connection.execute(text(f"EXPLAIN {statement}")).mappings()}
                 for statement in statements]
    assert all(set(plan) <= {"shadow_predictions", "drybeans", "feedback"} for plan in plans), plans
    counting = plans[1]
    assert (counting["drybeans"]["type"], counting["drybeans"]["key"]) == ("eq_ref", "uq_drybeans_request_bean")
    assert (counting["feedback"]["type"], counting["feedback"]["key"]) == ("eq_ref", "uq_feedback_record")
