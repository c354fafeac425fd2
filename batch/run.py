"""The loop from an input file to the output and rejects files: the next chunks read and the last one written on
threads of their own while this one is scored (Arrow's parser, numpy and the Parquet writer release the GIL for most
of it), with at most a few chunks in memory at once. The reader starts before the scorer is loaded and reads further
ahead until it is, so that loading a model (its imports and checks: 1-2 s) overlaps parsing the first chunks."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from batch.files import Sink, Source, open_sink, rejects_path
from batch.scoring import LABEL
from data.schema import CLASSES

Scorer = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]
READ_AHEAD_ROWS = 200_000  # parsed ahead of the chunks being scored (2 at score.py's default): parsing keeps pace
LOADING_READ_AHEAD_ROWS = 1_000_000  # while the scorer loads: nothing is scored yet, so its memory is free


@dataclass
class Summary:
    """What a run did: rows read, scored (by variety) and refused, and how long it took."""

    rows: int = 0
    refused: int = 0
    seconds: float = 0.0
    varieties: Counter[str] = field(default_factory=Counter)
    rejects: Path | None = None  # written only when a row was refused

    def line(self) -> str:
        """One line for a log: rows, seconds, rate, counts per variety, rows refused."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        counts = ", ".join(f"{variety} {self.varieties[variety]:,}" for variety in CLASSES)
        refused = f"{self.refused:,} rows refused" + (f" (reasons in {self.rejects})" if self.rejects else "")
        return (f"{self.rows:,} rows in {self.seconds:.1f} s ({rate:,.0f} rows/s): {counts}; {refused}")


class Progress:
    """Told after each chunk; the quiet default does nothing (a terminal's bar is score.py's)."""

    def update(self, summary: Summary, source: Source) -> None:
        """A chunk is done."""

    def close(self) -> None:
        """The run is over."""


def score_file(source: Source, output: Path, load_scorer: Callable[[], Scorer], progress: Progress) -> Summary:
    """Score every chunk of `source` into `output` (and its rejects file, when a row is refused) with the scorer
    `load_scorer` gives once reading has begun. On any failure (loading the scorer too) the partial output and
    rejects are removed before the error propagates."""
    start = time.perf_counter()
    summary = Summary()
    sinks = _Sinks(output)
    chunks = _ReadAhead(source.chunks)
    try:
        scorer = load_scorer()
        chunks.limit(READ_AHEAD_ROWS)
        _score_chunks(chunks, scorer, sinks, summary, lambda: progress.update(summary, source))
        sinks.close()
    except BaseException:
        sinks.discard()
        raise
    finally:
        chunks.close()
        progress.close()
        source.close()
    summary.seconds = time.perf_counter() - start
    summary.rejects = sinks.rejects.path if sinks.rejects else None
    return summary


def _score_chunks(chunks: Iterable[pd.DataFrame], scorer: Scorer, sinks: _Sinks, summary: Summary,
                  chunk_done: Callable[[], None]) -> None:
    """Score each chunk while the previous one is written, on a thread of its own, in order."""
    with ThreadPoolExecutor(1, thread_name_prefix="writer") as writer:
        written: Future[None] | None = None
        for chunk in chunks:
            scored, rejects = scorer(chunk)
            if written is not None:
                written.result()
            written = writer.submit(sinks.write, scored, rejects)
            summary.rows += len(chunk)
            summary.refused += len(rejects)
            summary.varieties.update(scored[LABEL].value_counts().to_dict())
            chunk_done()
        if written is not None:
            written.result()


class _Sinks:
    """The output, opened at once, and the rejects file, opened at the first refused row."""

    def __init__(self, output: Path) -> None:
        self.output = open_sink(output)
        self.rejects: Sink | None = None

    def write(self, scored: pd.DataFrame, rejects: pd.DataFrame) -> None:
        self.output.write(scored)
        if len(rejects):
            if self.rejects is None:
                self.rejects = open_sink(rejects_path(self.output.path), as_text=True)
            self.rejects.write(rejects)

    def close(self) -> None:
        self.output.close()
        if self.rejects is not None:
            self.rejects.close()

    def discard(self) -> None:
        """Close and remove both files: a partial output must not pass for a whole one."""
        for sink in (self.output, self.rejects):
            if sink is not None:
                try:
                    sink.close()
                finally:
                    sink.path.unlink(missing_ok=True)


class _ReadAhead:
    """The chunks, parsed on a thread from the start, the next one whenever fewer rows than a limit wait (at first
    LOADING_READ_AHEAD_ROWS, then what `limit` sets); the reader's error is raised by the iteration, in order. `close`
    stops the reader, whether or not the chunks were all taken."""

    def __init__(self, chunks: Iterator[pd.DataFrame]) -> None:
        self._chunks = chunks
        self._ready: deque[pd.DataFrame | BaseException | None] = deque()
        self._rows = 0  # in the queued chunks
        self._limit = LOADING_READ_AHEAD_ROWS
        self._stopped = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="reader", daemon=True)
        self._reader.start()

    def __iter__(self) -> Iterator[pd.DataFrame]:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._ready)
                item = self._ready.popleft()
                self._rows -= len(item) if isinstance(item, pd.DataFrame) else 0
                self._changed.notify_all()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def limit(self, rows: int) -> None:
        """Parse the next chunk only while fewer than `rows` rows wait, from now on."""
        with self._changed:
            self._limit = rows

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._reader.join()

    def _read(self) -> None:
        try:
            while self._room():  # before parsing, not after: no parsed chunk waits outside the queue
                chunk = next(self._chunks, None)
                self._queue(chunk)
                if chunk is None:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._queue(exc)

    def _room(self) -> bool:
        """Wait until fewer rows than the limit are queued; False once the consumer has gone."""
        with self._changed:
            self._changed.wait_for(lambda: self._stopped or self._rows < self._limit)
            return not self._stopped

    def _queue(self, item: pd.DataFrame | BaseException | None) -> None:
        """Hand the item to the consumer, unless it has gone."""
        with self._changed:
            if not self._stopped:
                self._ready.append(item)
                self._rows += len(item) if isinstance(item, pd.DataFrame) else 0
                self._changed.notify_all()
