"""Exact explanations of a linear SVC's label: each feature's share of the decisive pairwise decision.

The SVC decides by 21 pairwise (one-vs-one) linear classifiers. For a bean labelled `w` whose runner-up (the
next-highest one-vs-rest score) is `r`, the decisive classifier is the pair (w, r); its decision value is

    d = sum_f weight_f * standardised_f + intercept,   standardised_f = (x_f - mean_f) / scale_f,

oriented so that d > 0 favours `w`. The contribution of feature f is its term ``weight_f * standardised_f``: the
contributions plus the intercept are d (to float rounding), with nothing approximated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.pipeline import Pipeline

from model.compiled_svc import CompiledLinearSVC

Float64Array = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Explanations:
    """Per bean: the runner-up class, each feature's contribution, the intercept and the decision value."""

    runner_up: Indices  # (n,) class index
    contributions: Float64Array  # (n, n_features)
    intercept: Float64Array  # (n,)
    decision: Float64Array  # (n,) contributions.sum(axis=1) + intercept


@dataclass(frozen=True, eq=False)
class PairwiseExplainer:
    """The scaler and pairwise weights of a fitted linear SVC, in libsvm's orientation."""

    mean: Float64Array
    scale: Float64Array
    weights: Float64Array  # (n_pairs, n_features): > 0 favours the pair's first class
    intercepts: Float64Array  # (n_pairs,)
    pair_of: npt.NDArray[np.intp]  # (n_classes, n_classes): the row of pair (i, j) in `weights`, i != j

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> PairwiseExplainer:
        """From a fitted ``Pipeline([StandardScaler(), SVC(kernel="linear")])``; ValueError for anything else."""
        compiled = CompiledLinearSVC.from_pipeline(pipeline)
        n_classes = len(compiled.classes)
        pair_of = np.zeros((n_classes, n_classes), dtype=np.intp)
        for row, pair in enumerate(compiled.pair_matrix):
            i, j = np.flatnonzero(pair == 1.0)[0], np.flatnonzero(pair == -1.0)[0]
            pair_of[i, j] = pair_of[j, i] = row
        return cls(compiled.mean, compiled.scale, compiled.weights, compiled.intercepts, pair_of)

    def explain(self, rows: npt.ArrayLike, labels: Indices, scores: Float64Array) -> Explanations:
        """Explain each row's label (class indices) against its runner-up by the ovr `scores` (rows x classes)."""
        rows = np.asarray(rows, dtype=np.float64)
        others = np.array(scores, dtype=np.float64)
        others[np.arange(len(others)), labels] = -np.inf
        runner_up = np.argmax(others, axis=1)
        pairs = self.pair_of[labels, runner_up]
        # libsvm's pair (i, j), i < j, votes for i when its value is > 0: flip it when the label is the second.
        sign = np.where(labels < runner_up, 1.0, -1.0)
        standardised = (rows - self.mean) / self.scale  # as StandardScaler.transform rounds it
        contributions = sign[:, None] * self.weights[pairs] * standardised
        intercept = sign * self.intercepts[pairs]
        return Explanations(runner_up, contributions, intercept, contributions.sum(axis=1) + intercept)
