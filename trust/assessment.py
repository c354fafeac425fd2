"""Which answers to doubt, per bean: consistent features, in the training distribution, a prediction set of exactly
one variety; `needs_review` when any of them fails. One call per request, on arrays, beside the labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trust.consistency import Inconsistency, consistent, inconsistencies

if TYPE_CHECKING:
    from model.classifier import Classifier

DEFAULT_COVERAGE = 0.95
Flags = npt.NDArray[np.bool_]
BeanFlags = tuple[bool, bool | None, bool]  # consistent, in_distribution, needs_review


@dataclass(frozen=True)
class Assessment:
    """The doubts about one request's beans. `in_distribution`, `ood_score` and `sets` are None for a model saved
    before train.py fitted them."""

    rows: npt.NDArray[np.float64]
    probabilities: npt.NDArray[np.float64]  # calibrated, (beans, varieties)
    consistent: Flags
    in_distribution: Flags | None
    ood_score: npt.NDArray[np.float64] | None
    sets: Flags | None  # (beans, varieties): the varieties in each bean's prediction set
    needs_review: Flags

    def inconsistencies(self, bean: int) -> list[Inconsistency]:
        """What disagrees in one bean (empty for a consistent one)."""
        return [] if self.consistent[bean] else inconsistencies(self.rows[bean])

    def flags(self) -> list[BeanFlags]:
        """Each bean's flags as its record keeps them: consistent, in_distribution (None: not assessed),
        needs_review."""
        inside = self.in_distribution.tolist() if self.in_distribution is not None else [None] * len(self.rows)
        return list(zip(self.consistent.tolist(), inside, self.needs_review.tolist(), strict=True))

    @property
    def counts(self) -> dict[str, int]:
        """Beans flagged in this request: inconsistent, out of distribution, needing review."""
        return {"inconsistent": int((~self.consistent).sum()),
                "out_of_distribution": 0 if self.in_distribution is None else int((~self.in_distribution).sum()),
                "needs_review": int(self.needs_review.sum())}


def assess(classifier: Classifier, rows: npt.NDArray[np.float64], labels: npt.NDArray[np.str_],
           probabilities: npt.NDArray[np.float64], coverage: float = DEFAULT_COVERAGE) -> Assessment:
    """The doubts about each bean the classifier labelled."""
    checked = consistent(rows)
    review = ~checked
    in_distribution = ood_score = sets = None
    if classifier.ood is not None:
        ood_score = classifier.ood.score(rows, classifier.class_indices(labels))
        in_distribution = ood_score <= classifier.ood.threshold
        review |= ~in_distribution
    if classifier.conformal is not None:
        sets = classifier.conformal.sets(probabilities, coverage)
        review |= sets.sum(axis=1) != 1
    return Assessment(rows, probabilities, checked, in_distribution, ood_score, sets, review)
