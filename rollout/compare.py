"""Champion against challenger on the same beans: agreement, flips, and on the labelled ones accuracy, recall and an
exact McNemar test.

Counts accumulate chunk by chunk (`tally`, then `+`), so that a comparison over millions of beans holds a few
hundred integers; `compare` turns them into the report the backtest prints and the compare route will answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from data.schema import CLASSES
from monitoring.quality import ratio

SIGNIFICANCE = 0.05
Verdict = Literal["better", "worse", "no significant difference", "not enough labelled beans"]


@dataclass(frozen=True)
class Tally:
    """Counts of scored beans: `flips[champion, challenger]` over all of them, and `labelled[true, champion,
    challenger]` over those with a reported true variety; indices in CLASSES order."""

    flips: npt.NDArray[np.int64]
    labelled: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> Tally:
        """No beans yet."""
        k = len(CLASSES)
        return cls(np.zeros((k, k), np.int64), np.zeros((k, k, k), np.int64))

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.flips + other.flips, self.labelled + other.labelled)


def class_indices(labels: Sequence[str] | npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """Each label's index in CLASSES; ValueError naming the first label that is not a variety."""
    lookup = {name: i for i, name in enumerate(CLASSES)}
    try:
        return np.fromiter((lookup[str(label)] for label in labels), np.int64, count=len(labels))
    except KeyError as error:
        raise ValueError(f"{error.args[0]!r} is not a variety; known: {', '.join(CLASSES)}") from None


def tally(champion: Sequence[str] | npt.NDArray[np.str_], challenger: Sequence[str] | npt.NDArray[np.str_],
          truth: Sequence[str | None] | None = None) -> Tally:
    """Count one batch: each bean's champion label, challenger label and true variety (None: not reported)."""
    if len(champion) != len(challenger) or (truth is not None and len(truth) != len(champion)):
        raise ValueError("champion, challenger and truth must have one entry per bean")
    k = len(CLASSES)
    a, b = class_indices(champion), class_indices(challenger)
    flips = np.bincount(a * k + b, minlength=k * k).reshape(k, k)
    labelled = np.zeros((k, k, k), np.int64)
    if truth is not None:
        known = [i for i, variety in enumerate(truth) if variety is not None]
        t = class_indices([truth[i] for i in known])  # type: ignore[misc]  # None filtered out
        labelled = np.bincount((t * k + a[known]) * k + b[known], minlength=k ** 3).reshape(k, k, k)
    return Tally(flips.astype(np.int64), labelled.astype(np.int64))


class ModelFigures(BaseModel):
    """One model on the labelled beans."""

    model: str | None = Field(description="its tag")
    accuracy: float | None = Field(description="share of labelled beans it got right; null below min_count")
    correct: int = Field(description="labelled beans it got right")
    recall: dict[str, float | None] = Field(description="per true variety, the share it got right; null for a "
                                                        "variety with fewer than min_count labelled beans")


class Flips(BaseModel):
    """Rows: the champion's label; columns: the challenger's; both in `classes` order. Off the diagonal: flips."""

    classes: list[str]
    counts: list[list[int]]


class McNemar(BaseModel):
    """Exact McNemar test on the labelled beans where exactly one model is right."""

    b: int = Field(description="champion right, challenger wrong")
    c: int = Field(description="challenger right, champion wrong")
    p_value: float = Field(description="two-sided exact binomial test of b against b + c at 1/2; 1 when b + c = 0")


class Counts(BaseModel):
    """How many beans the figures rest on."""

    scored: int = Field(description="beans both models classified")
    labelled: int = Field(description="of those, beans with a reported true variety")
    min_count: int = Field(description="fewer labelled beans give null figures and no verdict")


class Comparison(BaseModel):
    """The challenger against the champion on the same beans."""

    champion: ModelFigures
    challenger: ModelFigures
    agreement: float | None = Field(description="share of scored beans both label the same; null when none")
    flips: Flips
    mcnemar: McNemar
    verdict: Verdict = Field(description=f"the challenger is better or worse when McNemar's p < {SIGNIFICANCE}")
    counts: Counts


def mcnemar(b: int, c: int) -> McNemar:
    """The exact (binomial) McNemar test of the discordant pairs."""
    from scipy.stats import binomtest  # not at import: 0.2 s of `bentoml serve`'s own start (workers load it anyway)

    p_value = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return McNemar(b=b, c=c, p_value=float(p_value))


def verdict(test: McNemar, labelled: int, min_count: int) -> Verdict:
    """The challenger against the champion, in words."""
    if labelled < min_count:
        return "not enough labelled beans"
    if test.p_value < SIGNIFICANCE:
        return "better" if test.c > test.b else "worse"
    return "no significant difference"


def compare(counts: Tally, *, min_count: int, champion: str | None = None,
            challenger: str | None = None) -> Comparison:
    """The comparison the counts make; `champion` and `challenger` name the models."""
    labelled = counts.labelled
    n_labelled = int(labelled.sum())
    truly = labelled.sum(axis=(1, 2))
    champion_right = np.einsum("iij->i", labelled)  # true = champion's label
    challenger_right = np.einsum("iji->i", labelled)  # true = challenger's label
    both_right = np.einsum("iii->i", labelled)
    test = mcnemar(int((champion_right - both_right).sum()), int((challenger_right - both_right).sum()))
    scored = int(counts.flips.sum())

    def figures(model: str | None, right: npt.NDArray[np.int64]) -> ModelFigures:
        return ModelFigures(model=model, accuracy=ratio(int(right.sum()), n_labelled, min_count),
                            correct=int(right.sum()),
                            recall={name: ratio(int(right[i]), int(truly[i]), min_count)
                                    for i, name in enumerate(CLASSES)})

    return Comparison(
        champion=figures(champion, champion_right), challenger=figures(challenger, challenger_right),
        agreement=int(np.trace(counts.flips)) / scored if scored else None,
        flips=Flips(classes=list(CLASSES), counts=counts.flips.tolist()),
        mcnemar=test, verdict=verdict(test, n_labelled, min_count),
        counts=Counts(scored=scored, labelled=n_labelled, min_count=min_count))
