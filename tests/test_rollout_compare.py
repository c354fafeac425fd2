"""rollout/compare.py in process: small cases computed by hand, McNemar against the closed form and scipy, every
verdict, and the figures against scikit-learn's on random labels."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from data.schema import CLASSES
from rollout.compare import Tally, compare, mcnemar, tally


def exact_p(b: int, c: int) -> Fraction:
    """Two-sided exact McNemar p-value, by hand: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1."""
    n = b + c
    return min(Fraction(1), 2 * Fraction(sum(comb(n, i) for i in range(min(b, c) + 1)), 2 ** n))


def discordant(b: int, c: int, concordant: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Beans all truly SIRA: `b` the champion alone gets right, `c` the challenger alone, `concordant` both."""
    champion = ["SIRA"] * b + ["CALI"] * c + ["SIRA"] * concordant
    challenger = ["CALI"] * b + ["SIRA"] * c + ["SIRA"] * concordant
    return champion, challenger, ["SIRA"] * (b + c + concordant)


def test_a_small_case_by_hand() -> None:
    champion = ["SIRA", "SIRA", "CALI", "DERMASON"]
    challenger = ["SIRA", "CALI", "CALI", "SEKER"]
    truth = ["SIRA", "CALI", None, "DERMASON"]  # the third bean is not reported
    report = compare(tally(champion, challenger, truth), min_count=1, champion="m:1", challenger="m:2")

    k = {name: i for i, name in enumerate(CLASSES)}
    flips = np.zeros((7, 7), int)
    for a, b in [("SIRA", "SIRA"), ("SIRA", "CALI"), ("CALI", "CALI"), ("DERMASON", "SEKER")]:
        flips[k[a], k[b]] += 1
    assert report.flips.classes == list(CLASSES) and report.flips.counts == flips.tolist()
    assert report.agreement == 0.5
    assert (report.counts.scored, report.counts.labelled, report.counts.min_count) == (4, 3, 1)
    # Bean 0: both right; bean 1: only the challenger (c); bean 3: only the champion (b).
    assert (report.mcnemar.b, report.mcnemar.c, report.mcnemar.p_value) == (1, 1, 1.0)
    assert (report.champion.model, report.champion.correct, report.champion.accuracy) == ("m:1", 2, 2 / 3)
    assert (report.challenger.model, report.challenger.correct, report.challenger.accuracy) == ("m:2", 2, 2 / 3)
    assert report.champion.recall == {**dict.fromkeys(CLASSES), "SIRA": 1.0, "CALI": 0.0, "DERMASON": 1.0}
    assert report.challenger.recall == {**dict.fromkeys(CLASSES), "SIRA": 1.0, "CALI": 1.0, "DERMASON": 0.0}
    assert report.verdict == "no significant difference"


def test_below_the_minimum_figures_are_null_and_there_is_no_verdict() -> None:
    report = compare(tally(*discordant(0, 20, concordant=9)), min_count=30)  # 29 labelled: one short
    assert report.verdict == "not enough labelled beans"
    assert report.champion.accuracy is None and report.challenger.accuracy is None
    assert set(report.challenger.recall.values()) == {None}
    assert (report.counts.labelled, report.mcnemar.c, report.challenger.correct) == (29, 20, 29)
    assert report.agreement == pytest.approx(9 / 29)
    report = compare(tally(*discordant(0, 20, concordant=10)), min_count=30)
    assert report.verdict == "better" and report.challenger.accuracy == 1.0 and report.champion.accuracy == 1 / 3


def test_unlabelled_beans_count_in_agreement_only() -> None:
    report = compare(tally(["SIRA", "CALI"], ["SIRA", "SIRA"]), min_count=30)
    assert (report.counts.scored, report.counts.labelled, report.agreement) == (2, 0, 0.5)
    assert report.verdict == "not enough labelled beans" and report.mcnemar.p_value == 1.0
    empty = compare(Tally.empty(), min_count=30)
    assert (empty.agreement, empty.counts.scored, empty.champion.accuracy) == (None, 0, None)


@pytest.mark.parametrize(("b", "c", "verdict"), [
    (1, 9, "better"),  # p = 2 * 11 / 1024 = 0.0215
    (9, 1, "worse"),
    (3, 6, "no significant difference"),  # p = 2 * 130 / 512 = 0.508
    (0, 0, "no significant difference"),  # the models never disagree where it matters
    (20, 40, "better"),  # p = 0.0134
    (25, 40, "no significant difference"),  # p = 0.0822
])
def test_every_verdict(b: int, c: int, verdict: str) -> None:
    report = compare(tally(*discordant(b, c, concordant=30)), min_count=30)
    assert (report.mcnemar.b, report.mcnemar.c) == (b, c)
    assert report.mcnemar.p_value == pytest.approx(float(exact_p(b, c)), rel=1e-9)
    assert report.verdict == verdict


def test_mcnemar_by_hand_and_against_scipy() -> None:
    assert mcnemar(1, 6).p_value == pytest.approx(0.125, rel=1e-12)  # 2 * (1 + 7) / 2^7
    assert mcnemar(1, 9).p_value == pytest.approx(22 / 1024, rel=1e-12)
    assert mcnemar(0, 0).p_value == 1.0 and mcnemar(5, 5).p_value == 1.0
    for b in range(0, 40, 3):
        for c in range(0, 40, 4):
            if b + c:
                assert mcnemar(b, c).p_value == pytest.approx(float(exact_p(b, c)), rel=1e-9, abs=1e-300)
                assert mcnemar(b, c).p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    assert mcnemar(400, 600).p_value == pytest.approx(float(exact_p(400, 600)), rel=1e-6)  # ~3e-10


def test_figures_equal_scikit_learns_and_chunks_add_up() -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    truth = rng.choice(CLASSES, n)
    champion = np.where(rng.random(n) < 0.9, truth, rng.choice(CLASSES, n))
    challenger = np.where(rng.random(n) < 0.93, truth, rng.choice(CLASSES, n))
    reported = [str(t) if i % 3 else None for i, t in enumerate(truth)]  # two thirds reported
    whole = tally(champion, challenger, reported)
    parts = Tally.empty()
    for start in range(0, n, 777):
        parts += tally(champion[start:start + 777], challenger[start:start + 777], reported[start:start + 777])
    assert compare(parts, min_count=30) == compare(whole, min_count=30)

    report = compare(whole, min_count=30)
    known = np.array([t is not None for t in reported])
    y, a, b = truth[known], champion[known], challenger[known]
    assert report.flips.counts == confusion_matrix(champion, challenger, labels=list(CLASSES)).tolist()
    assert report.agreement == pytest.approx(float(np.mean(champion == challenger)))
    assert report.champion.accuracy == pytest.approx(accuracy_score(y, a))
    assert report.challenger.accuracy == pytest.approx(accuracy_score(y, b))
    for name, expected in zip(CLASSES, recall_score(y, b, labels=list(CLASSES), average=None), strict=True):
        assert report.challenger.recall[name] == pytest.approx(expected)
    assert report.mcnemar.b == int(np.sum((a == y) & (b != y)))
    assert report.mcnemar.c == int(np.sum((a != y) & (b == y)))
    assert report.verdict == ("better" if report.mcnemar.p_value < 0.05 else "no significant difference")


def test_labels_that_are_not_varieties_and_ragged_input_are_refused() -> None:
    with pytest.raises(ValueError, match="'sira' is not a variety; known: BARBUNYA"):
        tally(["SIRA"], ["sira"])
    with pytest.raises(ValueError, match="'PINTO' is not a variety"):
        tally(["SIRA"], ["SIRA"], ["PINTO"])
    with pytest.raises(ValueError, match="one entry per bean"):
        tally(["SIRA", "CALI"], ["SIRA"])
