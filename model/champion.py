"""The quality gate's comparison: the candidate against the current champion, on the same holdout beans.

The champion, for now, is the newest model of the name in the store before this run.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
import numpy.typing as npt
from bentoml.exceptions import NotFound

from model.evaluation import ChampionComparison


def current_champion(name: str) -> bentoml.Model | None:
    """The newest model called `name` in the model store, or None."""
    try:
        models = bentoml.models.list(name)
    except NotFound:  # BentoML's answer for a name with no model
        return None
    return max(models, key=lambda model: model.info.creation_time, default=None)


def compare(champion: bentoml.Model | None, candidate_accuracy: float, x_holdout: npt.NDArray[np.float64],
            y_holdout: npt.NDArray[Any]) -> ChampionComparison:
    """Evaluate `champion` on the candidate's holdout beans and set the two accuracies side by side."""
    same = {"candidate_accuracy": candidate_accuracy, "holdout_beans": len(y_holdout)}
    if champion is None:
        return ChampionComparison(champion=None, champion_accuracy=None, better=None, **same)
    try:
        labels = bentoml.sklearn.load_model(champion).predict(x_holdout)
    except Exception as exc:  # an older model can fail to load in many ways: say so, never crash
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return ChampionComparison(champion=str(champion.tag), champion_accuracy=None, better=None, problem=problem,
                                  **same)
    accuracy = float(np.mean(labels == y_holdout))
    return ChampionComparison(champion=str(champion.tag), champion_accuracy=accuracy,
                              better=candidate_accuracy > accuracy, **same)


def describe(comparison: ChampionComparison, name: str) -> str:
    """One line: 'candidate 0.9356 vs champion drybean_svc:abc 0.9336 on the same 4,084 holdout beans'."""
    candidate = f"candidate {comparison.candidate_accuracy:.4f}"
    if comparison.champion is None:
        return f"{candidate}; no champion: no {name} in the model store before this run"
    if comparison.champion_accuracy is None:
        return f"{candidate}; champion {comparison.champion} could not be evaluated ({comparison.problem})"
    return (f"{candidate} vs champion {comparison.champion} {comparison.champion_accuracy:.4f} "
            f"on the same {comparison.holdout_beans:,} holdout beans")
