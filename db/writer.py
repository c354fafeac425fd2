"""Group commit: records from concurrent requests share one transaction and one multi-row INSERT."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from db.store import PredictionRecord, RecordKey, insert_predictions

logger = logging.getLogger(__name__)
MAX_ROWS_PER_COMMIT = 20_000


@dataclass
class _Pending:
    records: list[PredictionRecord]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[dict[RecordKey, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def resolve(self, ids: dict[RecordKey, int] | None, error: BaseException | None = None) -> None:
        """Hand the outcome to the waiting request, on its own event loop."""
        self.loop.call_soon_threadsafe(_settle, self.future, ids, error)


def _settle(future: asyncio.Future[dict[RecordKey, int]], ids: dict[RecordKey, int] | None,
            error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client gone); the rows are committed regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(ids or {})


class GroupCommitWriter:
    """One thread per worker drains every pending write and commits them together.

    While one transaction commits, the next requests queue up; the next round takes them all. Each request's
    `write` returns only once its rows are committed, with their ids.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
        self._thread.start()

    async def write(self, records: list[PredictionRecord]) -> dict[RecordKey, int]:
        """Commit `records`; return their ids by key."""
        pending = _Pending(records, asyncio.get_running_loop())
        self._queue.put(pending)
        return await pending.future

    def close(self, timeout: float = 30) -> None:
        """Finish the writes already queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch, rows = [first], len(first.records)
            while rows < MAX_ROWS_PER_COMMIT:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is None:
                    stopping = True
                    break
                batch.append(pending)
                rows += len(pending.records)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._sessions.begin() as session:
                ids = insert_predictions(session, [record for pending in batch for record in pending.records])
        except Exception as exc:
            logger.warning("could not record %d prediction(s): %s", sum(len(p.records) for p in batch), exc)
            for pending in batch:
                pending.resolve(None, exc)
            return
        for pending in batch:
            pending.resolve({record.key: ids[record.key] for record in pending.records})
