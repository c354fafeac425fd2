"""What the training data looked like, kept in the model's metadata so that live traffic can be compared with it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

BINS = 10  # deciles of the training data


class FeatureReference(BaseModel):
    """One feature of the training data: quantile bins and the range it spanned."""

    edges: list[float] = Field(description="inner bin edges (training quantiles); bin i holds edges[i-1] <= x < "
                                           "edges[i], the first and last bins are open")
    shares: list[float] = Field(description="share of the training beans in each bin (len(edges) + 1 of them)")
    min: float
    max: float


class Reference(BaseModel):
    """The training data in summary: per-feature quantile bins and ranges, and the class priors."""

    rows: int
    features: dict[str, FeatureReference]
    class_priors: dict[str, float]


def bin_shares(edges: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Share of `values` in each bin that `edges` delimit."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def build_reference(x: npt.NDArray[np.float64], y: npt.ArrayLike, features: tuple[str, ...],
                    classes: tuple[str, ...]) -> Reference:
    """Summarise training features `x` (rows x features) and labels `y`."""
    labels = np.asarray(y)
    summaries = {}
    for name, column in zip(features, np.asarray(x, dtype=np.float64).T, strict=True):
        # Repeated quantiles (a feature with few distinct values) merge into one edge.
        edges = np.unique(np.quantile(column, np.linspace(0, 1, BINS + 1)[1:-1]))
        summaries[name] = FeatureReference(edges=edges.tolist(), shares=bin_shares(edges, column).tolist(),
                                           min=float(column.min()), max=float(column.max()))
    return Reference(rows=len(labels), features=summaries,
                     class_priors={name: float(np.mean(labels == name)) for name in classes})
