"""rollout/guard.py in process: each of the canary's three guard rails at its threshold, the reasons they give,
and ScoringStats updated and read from two threads at once."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from api import errors
from rollout.compare import Comparison, compare, tally
from rollout.guard import (
    ERROR_RATE_FLOOR,
    MIN_ERRORS,
    SCORING_TIMES_KEPT,
    ModelStats,
    ScoringStats,
    judge_canary,
)

HEALTHY = ModelStats(requests=10_000, errors=0, p99_seconds=0.004)


def judged(canary: ModelStats, champion: ModelStats = HEALTHY, comparison: Comparison | None = None) -> str | None:
    return judge_canary(canary, champion, comparison, min_requests=200, latency_ratio=2.0)


def upper_tail(errors_: int, requests: int, rate: Fraction) -> Fraction:
    """P(X >= errors_) for X ~ Binomial(requests, rate), by hand: the one-sided exact test's p-value."""
    return 1 - sum(comb(requests, i) * rate ** i * (1 - rate) ** (requests - i) for i in range(errors_))


def fewest_significant_errors(requests: int, rate: Fraction) -> int:
    """The fewest errors in `requests` whose upper tail is below 1%."""
    return next(k for k in range(requests + 1) if upper_tail(k, requests, rate) < Fraction(1, 100))


# (a) error rate


def test_errors_significantly_above_the_champions_rate_roll_back_at_the_threshold() -> None:
    champion = ModelStats(requests=10_000, errors=100, p99_seconds=0.004)  # 1%
    threshold = fewest_significant_errors(1_000, Fraction(1, 100))
    assert threshold > 10  # more than the 10 expected
    assert judged(ModelStats(1_000, threshold - 1, 0.004), champion) is None
    reason = judged(ModelStats(1_000, threshold, 0.004), champion)
    p_value = float(upper_tail(threshold, 1_000, Fraction(1, 100)))
    assert reason == errors.CANARY_ERRORS.format(
        errors=threshold, requests=1_000, rate=threshold / 1_000, champion_errors=100, champion_requests=10_000,
        expected=0.01, p_value=p_value)
    assert f"the canary failed {threshold} of 1000 requests ({threshold / 10:.2f}%)" in reason


def test_a_champion_without_errors_is_taken_to_fail_one_in_a_thousand() -> None:
    assert ERROR_RATE_FLOOR == 0.001
    assert judged(ModelStats(100, MIN_ERRORS - 1, 0.004)) is None  # 2 of 100: p ~ 5e-3, but too few errors
    reason = judged(ModelStats(100, MIN_ERRORS, 0.004))
    assert reason is not None and "(taken as 0.10%)" in reason
    # The floor, not the champion's 0%, sets the bar: at 1 in 1,000 the threshold in 2,000 requests is 7 errors.
    threshold = fewest_significant_errors(2_000, Fraction(1, 1_000))
    assert threshold == 7
    assert judged(ModelStats(2_000, threshold - 1, 0.004)) is None
    assert judged(ModelStats(2_000, threshold, 0.004)) is not None
    # A champion that served nothing yet: the floor as well.
    assert judged(ModelStats(2_000, threshold, 0.004), ModelStats(0, 0, None)) is not None


def test_a_canary_failing_as_often_as_the_champion_is_kept() -> None:
    champion = ModelStats(requests=1_000, errors=50, p99_seconds=0.004)
    assert judged(ModelStats(200, 10, 0.004), champion) is None
    assert judged(ModelStats(200, 15, 0.004), champion) is None  # 7.5% against 5%: not significant


# (b) p99 latency


def test_a_p99_over_the_ratio_rolls_back_once_both_served_enough() -> None:
    champion = ModelStats(requests=500, errors=0, p99_seconds=0.004)
    assert judged(ModelStats(200, 0, 0.008), champion) is None  # exactly twice: not over
    reason = judged(ModelStats(200, 0, 0.0081), champion)
    assert reason == errors.CANARY_SLOW.format(canary_ms=8.1, champion_ms=4.0, ratio=2.025, limit=2.0, requests=200,
                                               champion_requests=500)
    assert reason == ("the canary's p99 scoring time is 8.1 ms, 2.0 times the champion's 4.0 ms, over 200 and 500 "
                      "requests (limit: 2 times)")
    assert judged(ModelStats(199, 0, 0.1), champion) is None  # the canary served too few
    assert judged(ModelStats(200, 0, 0.1), ModelStats(199, 0, 0.004)) is None  # the champion did
    assert judged(ModelStats(200, 200, None), champion) is not None  # only failures: the error rule's case
    assert "p99" not in (judged(ModelStats(200, 200, None), champion) or "")


def test_the_ratio_and_the_minimum_are_the_callers() -> None:
    canary, champion = ModelStats(50, 0, 0.006), ModelStats(50, 0, 0.004)
    assert judge_canary(canary, champion, None, min_requests=50, latency_ratio=1.4) is not None
    assert judge_canary(canary, champion, None, min_requests=50, latency_ratio=1.5) is None
    assert judge_canary(canary, champion, None, min_requests=51, latency_ratio=1.4) is None


# (c) accuracy


def labelled(champion_alone: int, canary_alone: int, both: int = 100) -> Comparison:
    """Beans all truly SIRA: `champion_alone` only the champion gets right, `canary_alone` only the canary."""
    champion = ["SIRA"] * champion_alone + ["CALI"] * canary_alone + ["SIRA"] * both
    canary = ["CALI"] * champion_alone + ["SIRA"] * canary_alone + ["SIRA"] * both
    return compare(tally(champion, canary, ["SIRA"] * len(champion)), min_count=30, champion="m:1", challenger="m:2")


def test_a_canary_significantly_less_accurate_rolls_back() -> None:
    worse = labelled(20, 5)
    assert worse.verdict == "worse"
    reason = judged(ModelStats(1_000, 0, 0.004), comparison=worse)
    assert reason == errors.CANARY_LESS_ACCURATE.format(
        labelled=125, accuracy=105 / 125, champion_accuracy=120 / 125, b=20, c=5, p_value=worse.mcnemar.p_value)
    assert reason.startswith("the canary is less accurate than the champion on 125 labelled beans: 0.8400 against "
                             "0.9600 (McNemar: champion alone right 20, canary alone right 5, p = ")


@pytest.mark.parametrize(("comparison", "verdict"), [
    (labelled(5, 20), "better"),
    (labelled(12, 8), "no significant difference"),
    (labelled(20, 0, both=5), "not enough labelled beans"),
])
def test_no_rollback_unless_the_verdict_is_worse(comparison: Comparison, verdict: str) -> None:
    assert comparison.verdict == verdict
    assert judged(ModelStats(1_000, 0, 0.004), comparison=comparison) is None


def test_every_broken_rule_is_named() -> None:
    assert judged(ModelStats(1_000, 0, 0.004), comparison=None) is None
    reason = judged(ModelStats(1_000, 30, 0.02), comparison=labelled(20, 5))
    assert reason is not None
    parts = reason.split("; ")
    assert [part.split(" ", 3)[:3] for part in parts] == [["the", "canary", "failed"], ["the", "canary's", "p99"],
                                                          ["the", "canary", "is"]]


# ScoringStats


def test_counts_times_and_reset() -> None:
    stats = ScoringStats()
    assert stats.snapshot("m:1") == ModelStats(0, 0, None)
    times = np.random.default_rng(4).uniform(0.001, 0.01, SCORING_TIMES_KEPT + 500)
    for seconds in times:
        stats.scored("m:1", float(seconds))
    stats.failed("m:1")
    stats.failed("m:2")
    snapshot = stats.snapshot("m:1")
    assert (snapshot.requests, snapshot.errors) == (len(times) + 1, 1)
    assert snapshot.p99_seconds == float(np.percentile(times[-SCORING_TIMES_KEPT:], 99))  # the newest only
    assert stats.snapshot("m:2") == ModelStats(1, 1, None)
    stats.reset("m:1")
    assert stats.snapshot("m:1") == ModelStats(0, 0, None)
    assert stats.snapshot("m:2") == ModelStats(1, 1, None)  # other models keep theirs
    stats.scored("m:1", 0.002)
    assert stats.snapshot("m:1") == ModelStats(1, 0, 0.002)


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Threads switch every few microseconds, so that updates and reads interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_updates_from_one_thread_while_another_reads(eager_switching: None) -> None:
    stats, rounds = ScoringStats(), 20_000
    seen: list[ModelStats] = []
    done = threading.Event()

    def serve() -> None:
        for i in range(rounds):
            stats.scored("canary", 0.001 * (i % 10 + 1))
            if i % 10 == 0:
                stats.failed("canary")
        done.set()

    def watch() -> None:
        while not done.is_set():
            seen.append(stats.snapshot("canary"))

    threads = [threading.Thread(target=serve), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert stats.snapshot("canary") == ModelStats(rounds + rounds // 10, rounds // 10, pytest.approx(0.01))
    assert len(seen) > 10  # the reader ran meanwhile
    requests = [snapshot.requests for snapshot in seen]
    assert requests == sorted(requests) and requests[-1] > requests[0]  # never a count going back
    assert all(snapshot.errors * 10 <= snapshot.requests + 10 for snapshot in seen)  # one failure per ten scorings


def test_a_canary_a_few_milliseconds_slower_is_not_a_latency_problem() -> None:
    # An RBF canary scores one bean in ~1 ms against the compiled linear champion's ~0.05 ms: twenty times slower,
    # unnoticed by any client. The margin keeps it; a canary 50 ms slower is rolled back.
    champion = ModelStats(500, 0, 0.00005)
    assert judge_canary(ModelStats(500, 0, 0.001), champion, None, min_requests=200, latency_ratio=3,
                        latency_margin=0.020) is None
    slow = judge_canary(ModelStats(500, 0, 0.050), champion, None, min_requests=200, latency_ratio=3,
                        latency_margin=0.020)
    assert slow is not None and "p99" in slow
