"""`score.py --store`: each chunk's predictions recorded through the service's own writer, built as service.py
builds it (group commit, the durable spool while the database is down, replay once it answers), so each bean is
recorded exactly once whatever the database does meanwhile."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pandas as pd

from batch.scoring import CONSISTENT, IN_DISTRIBUTION, LABEL, NEEDS_REVIEW
from config import Settings
from data.schema import FEATURES
from db import startup
from db.engine import create_db_engine
from serving.recording import PredictionRecorder


class PredictionStore:
    """The service's recorder for a batch: one request of at most `max_beans_per_request` beans at a time, several
    in flight (the writer commits them together). `record` raises errors.StoreUnavailable when neither the database
    nor the spool can take them."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_db_engine(settings)
        startup.migrate_if_behind(self.engine, settings)  # score anyway when the database is down: spooled
        self.writer = startup.open_writer(self.engine, settings)
        self.recorder = PredictionRecorder(self.writer)
        self.request_beans = settings.max_beans_per_request
        self.drain_seconds = settings.shutdown_drain_seconds
        self.statuses: Counter[str] = Counter()  # beans committed and spooled
        self._loop = asyncio.new_event_loop()

    def record(self, scored: pd.DataFrame, model_tag: str) -> None:
        """Record the scored rows (batch.scoring's frame) with their flags, as the service records an answer."""
        self._loop.run_until_complete(self._record(scored, model_tag))

    async def _record(self, scored: pd.DataFrame, model_tag: str) -> None:
        rows = scored[list(FEATURES)].to_numpy(dtype=np.float64)
        labels = scored[LABEL].to_numpy(dtype=str)
        inside = scored[IN_DISTRIBUTION].tolist() if IN_DISTRIBUTION in scored else [None] * len(scored)
        flags = list(zip(scored[CONSISTENT].tolist(), inside, scored[NEEDS_REVIEW].tolist(), strict=True))
        parts = range(0, len(rows), self.request_beans)
        recorded = await asyncio.gather(*(
            self.recorder.record(rows[start:start + self.request_beans], labels[start:start + self.request_beans],
                                 model_tag=model_tag, flags=flags[start:start + self.request_beans])
            for start in parts))
        for start, answer in zip(parts, recorded, strict=True):
            self.statuses[answer.status] += len(rows[start:start + self.request_beans])

    def close(self) -> None:
        """Store what is queued, replay the spool while the database answers (at most `shutdown_drain_seconds`;
        what is left waits in the spool for the service or the next run), release the connections."""
        self.writer.close(self.drain_seconds)
        self.engine.dispose()
        self._loop.close()
