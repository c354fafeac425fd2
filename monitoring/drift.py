"""Drift of recent traffic from the training reference: PSI per feature, class-mix shift, beans out of range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from monitoring.reference import Reference, bin_shares
from monitoring.schemas import ClassMix, DriftReport, FeatureDrift

SHARE_FLOOR = 1e-4  # an empty bin counts as this share, so that PSI stays finite


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    e = np.clip(np.asarray(expected, dtype=np.float64), SHARE_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), SHARE_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(reference: Reference, names: Sequence[str], rows: npt.NDArray[np.float64], labels: Sequence[str],
                 *, model: str, window: int, threshold: float) -> DriftReport:
    """Compare recorded beans (`rows`: beans x features `names`; `labels`: their predicted varieties) with the
    reference. With no beans, every figure is null."""
    beans = len(labels)
    outside_any = np.zeros(beans, dtype=bool)
    features = {}
    for name, column in zip(names, rows.reshape(beans, len(names)).T, strict=True):
        ref = reference.features[name]
        outside = (column < ref.min) | (column > ref.max)
        outside_any |= outside
        value = psi(ref.shares, bin_shares(np.array(ref.edges), column)) if beans else None
        features[name] = FeatureDrift(psi=value, outside_training_range=float(outside.mean()) if beans else None,
                                      drifted=value is not None and value > threshold)
    classes = list(reference.class_priors)
    live = [sum(label == name for label in labels) / beans for name in classes] if beans else None
    mix = ClassMix(psi=psi(list(reference.class_priors.values()), live) if live is not None else None,
                   training=reference.class_priors,
                   live=dict(zip(classes, live, strict=True)) if live is not None else None)
    return DriftReport(model=model, window=window, beans=beans, threshold=threshold, features=features,
                       drifted=[name for name, figure in features.items() if figure.drifted], class_mix=mix,
                       outside_training_range=float(outside_any.mean()) if beans else None)
