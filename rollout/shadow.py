"""Second opinions off the request's critical path: a shadow's label (or the champion's, for a canary's beans) for
beans another model answered, recorded in `shadow_predictions` in batches.

The request hands its job over with one append to a deque (atomic, no lock to take) and answers; a thread of the
worker takes every queued job
each 50 ms, scores each model's jobs in one call (timing the first alone: a latency sample of that model, measured
as the answer's was), and inserts the rows every half second. A full queue drops the job, a model that raises or a
database that is down loses that batch of second opinions: each bean is counted (drybeans_shadow_beans_total), none
ever fails or delays an answer.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import bentoml
import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine, Table, insert
from sqlalchemy.exc import SQLAlchemyError

from db.models import ShadowPrediction

if TYPE_CHECKING:
    from model.classifier import Classifier

logger = logging.getLogger("drybeans")
SHADOW_PREDICTIONS: Table = ShadowPrediction.__table__  # type: ignore[assignment]
SECOND_OPINIONS = bentoml.metrics.Counter(
    name="drybeans_shadow_beans", labelnames=["result"],
    documentation="Beans handed to a second opinion (a shadow, or the champion for a canary's beans), by result: "
                  "scored and recorded, dropped (queue full), failed (the model raised), lost (database unavailable).")
FLUSH_SECONDS = 0.5
FLUSH_ROWS = 2_000
DRAIN_SECONDS = 0.05  # how often the thread takes every queued job
COLUMNS = ("request_id", "bean_index", "model_tag", "name", "seconds", "answered_tag", "answered_name",
           "answered_seconds")


class ShadowJob(NamedTuple):
    """One answered request, and the model to score it again (a tuple: made on every request's path)."""

    request_id: str
    rows: npt.NDArray[np.float64]
    answered_tag: str
    answered_labels: npt.NDArray[np.str_]
    answered_seconds: float
    model: Classifier


class ShadowScorer:
    """A bounded queue of jobs and the thread that scores and records them."""

    def __init__(self, engine: Engine, capacity: int, count: Callable[[str, int], None] | None = None) -> None:
        self._engine = engine
        self._capacity = capacity
        self._jobs: deque[ShadowJob] = deque()
        self._closing = threading.Event()
        self._count = count or count_beans  # (result, beans)
        self._thread = threading.Thread(target=self._run, name="drybeans-shadow", daemon=True)
        self._thread.start()

    def submit(self, job: ShadowJob) -> None:
        """Queue a job without waiting; a full queue drops it."""
        if len(self._jobs) >= self._capacity:
            self._count("dropped", len(job.rows))
        else:
            self._jobs.append(job)

    def close(self, timeout: float) -> None:
        """Score and record what is queued, for at most `timeout` seconds."""
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[dict[str, object]] = []
        deadline = time.monotonic() + FLUSH_SECONDS
        while True:
            closing = self._closing.wait(DRAIN_SECONDS)  # woken by a clock, not by each job: no switch per request
            jobs = self._drain()
            for same_model in _by_model(jobs):
                pending.extend(self._score(same_model))
            if closing or len(pending) >= FLUSH_ROWS or time.monotonic() >= deadline:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + FLUSH_SECONDS
            if closing:
                return

    def _drain(self) -> list[ShadowJob]:
        """Every queued job, oldest first."""
        jobs = []
        while self._jobs:
            jobs.append(self._jobs.popleft())
        return jobs

    def _score(self, jobs: list[ShadowJob]) -> list[dict[str, object]]:
        """Score one model's jobs: the first alone, timed as a request is (its latency sample), the rest in one
        call (a per-call cost paid once: 1.5 µs a bean instead of 50 µs a request for the linear model)."""
        model, first, rest = jobs[0].model, jobs[0], jobs[1:]
        try:
            start = time.perf_counter()
            first_labels, _ = model.classify(first.rows)
            seconds = time.perf_counter() - start
            rest_labels = model.classify(np.vstack([job.rows for job in rest]))[0].tolist() if rest else []
        except Exception:  # a challenger's bug must not stop the thread: count it, keep scoring
            logger.exception("shadow model %s failed on %d requests", model.tag, len(jobs))
            self._count("failed", sum(len(job.rows) for job in jobs))
            return []
        self._count("scored", sum(len(job.rows) for job in jobs))
        found = _rows(first, first_labels.tolist(), seconds)
        offset = 0
        for job in rest:
            found += _rows(job, rest_labels[offset:offset + len(job.rows)], None)
            offset += len(job.rows)
        return found

    def _flush(self, rows: list[dict[str, object]]) -> None:
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                if connection.dialect.driver == "pymysql":
                    _insert_as_literals(connection, rows)
                else:
                    connection.execute(insert(SHADOW_PREDICTIONS), rows)
        except SQLAlchemyError as error:
            logger.warning("%d second opinions not recorded, the database is unavailable: %s", len(rows),
                           type(error).__name__)
            self._count("lost", len(rows))


def _by_model(jobs: list[ShadowJob]) -> list[list[ShadowJob]]:
    """The jobs grouped by the model that scores them, in arrival order."""
    groups: dict[str, list[ShadowJob]] = {}
    for job in jobs:
        groups.setdefault(job.model.tag, []).append(job)
    return list(groups.values())


def _rows(job: ShadowJob, labels: list[str], seconds: float | None) -> list[dict[str, object]]:
    return [{"request_id": job.request_id, "bean_index": index, "model_tag": job.model.tag, "name": label,
             "seconds": seconds, "answered_tag": job.answered_tag, "answered_name": answered,
             "answered_seconds": job.answered_seconds}
            for index, (label, answered) in enumerate(zip(labels, job.answered_labels.tolist(), strict=True))]


def _insert_as_literals(connection: Connection, rows: list[dict[str, object]]) -> None:
    """MySQL and MariaDB through PyMySQL: the statement's text is built here (as db/store.py does for predictions),
    escaping only the few distinct strings, instead of every value in Python (28 µs a row -> 8 µs)."""
    escape = functools.cache(connection.connection.driver_connection.escape)  # type: ignore[union-attr]
    head = f"INSERT INTO {SHADOW_PREDICTIONS.name} ({', '.join(COLUMNS)}) VALUES "  # noqa: S608  (fixed names)
    values = ",".join(f"({escape(r['request_id'])},{r['bean_index']:d},{escape(r['model_tag'])},{escape(r['name'])},"
                      f"{_number(r['seconds'])},{escape(r['answered_tag'])},{escape(r['answered_name'])},"
                      f"{_number(r['answered_seconds'])})" for r in rows)
    connection.exec_driver_sql(head + values, execution_options={"no_parameters": True})


def _number(value: object) -> str:
    return "NULL" if value is None else repr(float(value))  # type: ignore[arg-type]  # a float from the timer


def count_beans(result: str, beans: int) -> None:
    """Count second opinions in drybeans_shadow_beans_total."""
    SECOND_OPINIONS.labels(result=result).inc(beans)
