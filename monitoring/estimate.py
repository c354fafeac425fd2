"""Accuracy without labels: what a window of beans is expected to get right, bean by bean.

Each bean's chance that its label is right comes from a precision table fitted at training on out-of-fold
probabilities (beans the scoring model never saw): per predicted variety and per bin of how far its probability
leads the runner-up's, the share of out-of-fold beans that were right. The temperature-scaled probabilities alone
are nearly flat (90% of beans' top probability in 0.907-0.925), so their mean hardly moves with the window; their
lead over the runner-up still ranks beans by how often they are right. For a model saved without a table, the
chance is the top probability. The expectation holds while the table does: under a shift of the class mix within
the training's range of beans closely, under a covariate shift the model never saw not at all
(docs/monitoring.md, "Accuracy without labels").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitoring.schemas import EstimatedClassQuality, Figure

LEAD_BINS = 8  # of equal out-of-fold counts: enough to separate sure beans from doubtful ones, ~1,200 beans each


@dataclass(frozen=True)
class PrecisionTable:
    """Out-of-fold precision per predicted variety (rows) and per bin of its lead (columns): the lead is
    ln(top probability / runner-up's), binned at `edges` (ascending inner edges)."""

    edges: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]

    @classmethod
    def fit(cls, probabilities: npt.NDArray[np.float64], y_index: npt.NDArray[np.intp],
            bins: int = LEAD_BINS) -> PrecisionTable:
        """The table of out-of-fold `probabilities` (beans x classes) with true classes `y_index`. Each cell is
        shrunk by one pseudo-bean towards its variety's precision, so that a sparse cell stays sensible."""
        predicted, lead = probabilities.argmax(axis=1), _lead(probabilities)
        right = predicted == y_index
        edges = np.quantile(lead[np.isfinite(lead)], np.linspace(0, 1, bins + 1)[1:-1])
        column = np.searchsorted(edges, lead, side="right")
        table = np.empty((probabilities.shape[1], bins))
        for variety in range(probabilities.shape[1]):
            chosen = predicted == variety
            overall = float(right[chosen].mean()) if chosen.any() else 0.0
            for index in range(bins):
                cell = chosen & (column == index)
                table[variety, index] = (right[cell].sum() + overall) / (cell.sum() + 1)
        return cls(tuple(edges.tolist()), tuple(tuple(row) for row in table.tolist()))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PrecisionTable:
        """The table saved by `to_metadata`."""
        return cls(tuple(metadata["edges"]), tuple(tuple(row) for row in metadata["precision"]))

    def to_metadata(self) -> dict[str, Any]:
        """What the model store keeps (plain JSON)."""
        return {"method": "out-of-fold precision per predicted variety and lead bin",
                "edges": list(self.edges), "precision": [list(row) for row in self.precision]}

    def chance_right(self, probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each bean's chance that its most probable variety is its true one."""
        column = np.searchsorted(self.edges, _lead(probabilities), side="right")
        return np.asarray(self.precision)[probabilities.argmax(axis=1), column]


@dataclass(frozen=True)
class Estimate:
    """The expected accuracy of a window of beans and each variety's expected precision and recall."""

    accuracy: Figure  # count: beans in the window
    per_class: dict[str, EstimatedClassQuality]


def estimate(probabilities: npt.NDArray[np.float64], classes: tuple[str, ...], *, min_count: int,
             training: Mapping[str, Any] | None, table: PrecisionTable | None) -> Estimate:
    """Expected figures of beans labelled with their most probable variety, from their calibrated probabilities
    (beans x `classes`) and the model's precision table (None: each bean's top probability is its chance right);
    null where a figure rests on fewer than `min_count` beans.

    Precision of a variety: the mean chance right of the beans predicted as it. Recall: their chances right over
    the beans expected to be it: those plus each other bean's chance wrong, shared among its other varieties in
    proportion to their probabilities (count: its expected beans, rounded). Without a table, the expected beans of
    a variety are its probability mass. `training` is the `metrics` entry of the model's metadata (see
    evaluation.Metrics), None for another model.
    """
    beans = len(probabilities)
    predicted = probabilities.argmax(axis=1) if beans else np.zeros(0, dtype=np.intp)
    top = probabilities[np.arange(beans), predicted]
    chance = top if table is None or not beans else table.chance_right(probabilities)
    others = probabilities.copy()
    others[np.arange(beans), predicted] = 0.0
    rest = 1.0 - top
    shares = np.divide(others, rest[:, None], out=np.zeros_like(others), where=rest[:, None] > 0)
    mass = (shares * (1.0 - chance)[:, None]).sum(axis=0) if beans else np.zeros(len(classes))
    trained = training or {}
    per_class = {}
    for index, name in enumerate(classes):
        chosen = predicted == index
        predicted_beans, right = int(chosen.sum()), float(chance[chosen].sum())
        expected = right + float(mass[index])
        expected_beans = round(expected)
        scores = trained.get("per_class", {}).get(name, {})
        per_class[name] = EstimatedClassQuality(
            precision=Figure(live=_share(right, predicted_beans, predicted_beans, min_count), count=predicted_beans,
                             training=scores.get("precision")),
            recall=Figure(live=_share(right, expected, expected_beans, min_count), count=expected_beans,
                          training=scores.get("recall")))
    accuracy = Figure(live=_share(float(chance.sum()), beans, beans, min_count), count=beans,
                      training=trained.get("holdout_accuracy"))
    return Estimate(accuracy, per_class)


def _lead(probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """ln(top probability / runner-up's) per bean: how far the label leads (inf when the runner-up's is 0)."""
    ranked = np.sort(probabilities, axis=1)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(ranked[:, -1]) - np.log(ranked[:, -2]), dtype=np.float64)


def _share(part: float, whole: float, count: int, min_count: int) -> float | None:
    """part / whole, or None when the figure rests on fewer than `min_count` beans."""
    return part / whole if count >= min_count and whole > 0 else None
