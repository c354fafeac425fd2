"""Second opinions off the request's critical path: a shadow's label (or the champion's, for a canary's beans) for
beans another model answered, recorded in `shadow_predictions` in batches.

The request hands its job over with one non-blocking put and answers; a thread of the worker scores the jobs one
request at a time (so each model's scoring time per request is measured as the answer's was) and inserts the rows
every half second. A full queue drops the job, a model that raises or a database that is down loses that batch of
second opinions: each bean is counted (drybeans_shadow_beans_total), none ever fails or delays an answer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bentoml
import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, Table, insert
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


@dataclass(frozen=True)
class ShadowJob:
    """One answered request, and the model to score it again."""

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
        self._jobs: queue.Queue[ShadowJob | None] = queue.Queue(capacity)
        self._count = count or count_beans  # (result, beans)
        self._thread = threading.Thread(target=self._run, name="drybeans-shadow", daemon=True)
        self._thread.start()

    def submit(self, job: ShadowJob) -> None:
        """Queue a job without waiting; a full queue drops it."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._count("dropped", len(job.rows))

    def close(self, timeout: float) -> None:
        """Score and record what is queued, for at most `timeout` seconds."""
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[dict[str, object]] = []
        deadline = time.monotonic() + FLUSH_SECONDS
        while True:
            try:
                job = self._jobs.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                job = False  # type: ignore[assignment]  # time to flush
            if job:
                pending.extend(self._score(job))
            if job is None or len(pending) >= FLUSH_ROWS or time.monotonic() >= deadline:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + FLUSH_SECONDS
            if job is None:
                return

    def _score(self, job: ShadowJob) -> list[dict[str, object]]:
        start = time.perf_counter()
        try:
            labels, _ = job.model.classify(job.rows)
        except Exception:  # a challenger's bug must not stop the thread: count it, keep scoring
            logger.exception("shadow model %s failed on request %s", job.model.tag, job.request_id)
            self._count("failed", len(job.rows))
            return []
        seconds = time.perf_counter() - start
        self._count("scored", len(job.rows))
        return [{"request_id": job.request_id, "bean_index": index, "model_tag": job.model.tag, "name": label,
                 "seconds": seconds, "answered_tag": job.answered_tag, "answered_name": answered,
                 "answered_seconds": job.answered_seconds}
                for index, (label, answered) in enumerate(zip(labels.tolist(), job.answered_labels.tolist(),
                                                              strict=True))]

    def _flush(self, rows: list[dict[str, object]]) -> None:
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(SHADOW_PREDICTIONS), rows)
        except SQLAlchemyError as error:
            logger.warning("%d second opinions not recorded, the database is unavailable: %s", len(rows),
                           type(error).__name__)
            self._count("lost", len(rows))


def count_beans(result: str, beans: int) -> None:
    """Count second opinions in drybeans_shadow_beans_total."""
    SECOND_OPINIONS.labels(result=result).inc(beans)
