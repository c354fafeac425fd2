"""The canary's guard rails: each worker counts every model's requests, errors and recent scoring times, and
`judge_canary` says, in plain words with the numbers, why a canary must be rolled back, or None.

A canary is rolled back when, against the champion serving beside it:
(a) its error rate is significantly higher: a one-sided exact binomial test of its errors against the champion's
    error rate (at least ERROR_RATE_FLOOR), p < ERROR_SIGNIFICANCE, and at least MIN_ERRORS errors;
(b) its p99 scoring time is over `latency_ratio` times the champion's and over it by more than `latency_margin`
    seconds, both having served `min_requests` (a model 1 ms slower is not a latency problem, however small the
    champion's time);
(c) on the labelled beans both scored it is significantly less accurate (rollout/compare.py's McNemar verdict).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from api import errors
from rollout.compare import Comparison

SCORING_TIMES_KEPT = 2_000  # per model: the newest scoring times its p99 is taken over
ERROR_RATE_FLOOR = 0.001  # a champion without errors is taken to fail this often: a canary's first error is luck
ERROR_SIGNIFICANCE = 0.01
MIN_ERRORS = 3


@dataclass(frozen=True)
class ModelStats:
    """One model's figures in one worker since its counts started."""

    requests: int  # requests it scored, failed ones included
    errors: int
    p99_seconds: float | None  # over its newest SCORING_TIMES_KEPT successful scorings; None before the first

    @property
    def error_rate(self) -> float:
        """Share of its requests that failed; 0 before the first request."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    seconds: deque[float] = field(default_factory=lambda: deque(maxlen=SCORING_TIMES_KEPT))


class ScoringStats:
    """Per model tag, the requests, errors and newest scoring times of one worker. Thread-safe: updated from the
    event loop, read by the guard's background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, _Counts] = {}

    def scored(self, tag: str, seconds: float) -> None:
        """The model scored a request in `seconds`."""
        with self._lock:
            counts = self._counts.setdefault(tag, _Counts())
            counts.requests += 1
            counts.seconds.append(seconds)

    def failed(self, tag: str) -> None:
        """The model failed to score a request."""
        with self._lock:
            counts = self._counts.setdefault(tag, _Counts())
            counts.requests += 1
            counts.errors += 1

    def snapshot(self, tag: str) -> ModelStats:
        """The model's figures now (zero for a model that has scored nothing)."""
        with self._lock:
            counts = self._counts.get(tag, _Counts())
            requests, failures, seconds = counts.requests, counts.errors, list(counts.seconds)
        p99 = float(np.percentile(seconds, 99)) if seconds else None
        return ModelStats(requests=requests, errors=failures, p99_seconds=p99)

    def reset(self, tag: str) -> None:
        """Forget the model's figures: a new canary starts from zero."""
        with self._lock:
            self._counts.pop(tag, None)


def judge_canary(canary: ModelStats, champion: ModelStats, comparison: Comparison | None, *, min_requests: int,
                 latency_ratio: float, latency_margin: float = 0.0) -> str | None:
    """Why the canary must be rolled back (every rule it breaks, with the numbers), or None to keep it."""
    reasons = [reason for reason in (error_reason(canary, champion),
                                     latency_reason(canary, champion, min_requests=min_requests,
                                                    latency_ratio=latency_ratio, latency_margin=latency_margin),
                                     accuracy_reason(comparison)) if reason]
    return "; ".join(reasons) or None


def error_reason(canary: ModelStats, champion: ModelStats) -> str | None:
    """Rule (a): the canary fails significantly more often than the champion."""
    if canary.errors < MIN_ERRORS:
        return None
    from scipy.stats import binomtest  # not at import: 0.2 s of `bentoml serve`'s own start (workers load it anyway)

    expected = max(champion.error_rate, ERROR_RATE_FLOOR)
    p_value = float(binomtest(canary.errors, canary.requests, expected, alternative="greater").pvalue)
    if p_value >= ERROR_SIGNIFICANCE:
        return None
    return errors.CANARY_ERRORS.format(errors=canary.errors, requests=canary.requests, rate=canary.error_rate,
                                       champion_errors=champion.errors, champion_requests=champion.requests,
                                       expected=expected, p_value=p_value)


def latency_reason(canary: ModelStats, champion: ModelStats, *, min_requests: int, latency_ratio: float,
                   latency_margin: float = 0.0) -> str | None:
    """Rule (b): the canary's p99 scoring time is over `latency_ratio` times the champion's, and more than
    `latency_margin` seconds above it."""
    if min(canary.requests, champion.requests) < min_requests or canary.p99_seconds is None \
            or champion.p99_seconds is None or canary.p99_seconds <= latency_ratio * champion.p99_seconds \
            or canary.p99_seconds - champion.p99_seconds <= latency_margin:
        return None
    return errors.CANARY_SLOW.format(canary_ms=canary.p99_seconds * 1000, champion_ms=champion.p99_seconds * 1000,
                                     ratio=canary.p99_seconds / champion.p99_seconds, limit=latency_ratio,
                                     requests=canary.requests, champion_requests=champion.requests)


def accuracy_reason(comparison: Comparison | None) -> str | None:
    """Rule (c): on the labelled beans both scored, the canary is significantly less accurate (McNemar)."""
    if comparison is None or comparison.verdict != "worse":
        return None
    # A verdict needs min_count labelled beans, so both accuracies are figures.
    return errors.CANARY_LESS_ACCURATE.format(
        accuracy=comparison.challenger.accuracy, champion_accuracy=comparison.champion.accuracy,
        labelled=comparison.counts.labelled, b=comparison.mcnemar.b, c=comparison.mcnemar.c,
        p_value=comparison.mcnemar.p_value)
