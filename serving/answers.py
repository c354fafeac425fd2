"""`/v1/classify`'s answer, encoded straight from the model's arrays.

The answer is documented by `schemas.ClassifyResponse`, but not built through it: validating and serialising
10,000 beans' pydantic models took 45 of the answer's 60 ms, while everything in it is already known to be well
formed (labels from the model, floats from numpy, ids from the database). orjson encodes the same document,
byte for byte, in a third of the time; tests/test_answers.py holds the two to that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from data.schema import FEATURES
from errors import CANNOT_EXPLAIN, CannotExplain

if TYPE_CHECKING:
    from model.classifier import Classifier
    from recording import Recorded


def classify_answer(classifier: Classifier, rows: npt.NDArray[np.float64], labels: npt.NDArray[np.str_],
                    scores: npt.NDArray[np.float64], recorded: Recorded, *, explain: bool) -> bytes:
    """The JSON of a `ClassifyResponse` for these beans and what became of their records."""
    return orjson.dumps({
        "model": classifier.tag,
        "request_id": recorded.request_id,
        "stored": recorded.status,
        "predictions": _bean_predictions(classifier, rows, labels, scores, recorded.ids, explain=explain),
    })


def refuse_unexplainable(classifier: Classifier, *, explain: bool) -> None:
    """CannotExplain (422) when explanations are asked of a model that has none; call it before recording."""
    if explain and not classifier.explains:
        raise CannotExplain(CANNOT_EXPLAIN.format(model=classifier.tag))


def _bean_predictions(classifier: Classifier, rows: npt.NDArray[np.float64], labels: npt.NDArray[np.str_],
                      scores: npt.NDArray[np.float64], ids: list[int | None], *,
                      explain: bool) -> list[dict[str, Any]]:
    """Each bean's `BeanPrediction`, as plain data, in field order."""
    classes = classifier.classes
    answers = [{"label": label, "scores": dict(zip(classes, row_scores, strict=True)),
                "probabilities": dict(zip(classes, row_probabilities, strict=True))}
               for label, row_scores, row_probabilities
               in zip(labels.tolist(), scores.tolist(), classifier.probabilities(scores).tolist(), strict=True)]
    if explain:
        explained = classifier.explain(rows, labels, scores)
        for answer, versus, row, intercept, decision in zip(
                answers, explained.runner_up.tolist(), explained.contributions.tolist(), explained.intercept.tolist(),
                explained.decision.tolist(), strict=True):
            answer["explanation"] = {"versus": classes[versus], "contributions": dict(zip(FEATURES, row, strict=True)),
                                     "intercept": intercept, "decision": decision}
    for answer, id_ in zip(answers, ids or [None] * len(answers), strict=True):
        answer["record_id"] = id_
    return answers
