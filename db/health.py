"""Whether the database answers, asked on a connection of its own and never waited on for long."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

CACHE_SECONDS = 1.0  # probes arriving together share one answer


class DatabaseProbe:
    """`SELECT 1` on a fresh connection (not the read pool, which busy reads may exhaust), one at a time.

    The check runs in a thread; a caller waits at most `timeout` and takes no answer as "down". A frozen database
    holds one thread per probe period at most (the engine's own timeouts end it), never one per caller.
    """

    def __init__(self, engine: Engine, timeout: float) -> None:
        self._engine = engine
        self._timeout = timeout
        self._running: asyncio.Task[bool] | None = None
        self._last: tuple[float, bool] = (0.0, False)

    async def answers(self) -> bool:
        """Whether the database answered a query just now."""
        checked_at, answered = self._last
        if time.monotonic() - checked_at < CACHE_SECONDS:
            return answered
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._select_one))
        try:
            answered = await asyncio.wait_for(asyncio.shield(self._running), self._timeout)
        except TimeoutError:
            answered = False
        self._last = (time.monotonic(), answered)
        return answered

    def _select_one(self) -> bool:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True
