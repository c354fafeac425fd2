"""`/v1/classify`'s answer, encoded straight from the model's arrays.

The answer is documented by `schemas.ClassifyResponse`, but not built through it: validating and serialising
10,000 beans' pydantic models took 45 of the answer's 60 ms, while everything in it is already known to be well
formed (labels from the model, floats from numpy, ids from the database). orjson encodes the same document,
byte for byte, in a third of the time; tests/test_answers.py holds the two to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np
import numpy.typing as npt
import orjson

from api import errors
from api.errors import CANNOT_EXPLAIN, CannotExplain
from data.schema import FEATURES
from trust.conformal import named_sets
from trust.consistency import consistent, inconsistencies

if TYPE_CHECKING:
    from model.classifier import Classifier
    from photos.pipeline import Photo
    from rollout.registry import Scored
    from serving.recording import Recorded
    from trust.assessment import Assessment

DOUBTFUL_BEANS = bentoml.metrics.Counter(
    name="drybeans_doubtful_beans", labelnames=["flag"],
    documentation="Beans answered with a doubt, by flag: inconsistent features, out of the training distribution, "
                  "needing review (also: a prediction set of other than one variety).")
MAX_BEANS_NAMED = 3  # beans an inconsistency refusal describes; it counts the rest


@dataclass(frozen=True)
class Answered:
    """One request's answer: the model's (rollout/registry.py), what became of the records, and which answers to
    doubt (None where not assessed: /predict)."""

    scored: Scored
    recorded: Recorded
    assessment: Assessment | None


def classify_answer(answered: Answered, *, explain: bool) -> bytes:
    """The JSON of a `ClassifyResponse` for these beans and what became of their records."""
    scored, recorded, assessment = answered.scored, answered.recorded, answered.assessment
    if assessment is None:
        raise ValueError("a /v1/classify answer needs the doubts: score_and_record with a coverage")
    return orjson.dumps({
        "model": scored.classifier.tag,
        "request_id": recorded.request_id,
        "stored": recorded.status,
        "predictions": _bean_predictions(scored.classifier, assessment, scored.labels, scored.scores, recorded.ids,
                                         explain=explain),
    })


def photo_answer(answered: Answered, photo: Photo, *, scale: str, model_pixels_per_mm: float | None) -> bytes:
    """The JSON of a `PhotoResponse`: each bean's place in the photo and its measured features beside what
    `/v1/classify` answers for it."""
    scored, recorded, assessment = answered.scored, answered.recorded, answered.assessment
    if assessment is None:
        raise ValueError("a /v1/photos answer needs the doubts: score_and_record with a coverage")
    predictions = _bean_predictions(scored.classifier, assessment, scored.labels, scored.scores, recorded.ids,
                                    explain=False)
    beans = [{"centroid": list(bean.centroid), "bbox": list(bean.bbox), "contour": bean.contour,
              "features": dict(zip(FEATURES, row, strict=True)), **prediction}
             for bean, row, prediction in zip(photo.beans, assessment.rows.tolist(), predictions, strict=True)]
    return orjson.dumps({"photo_id": recorded.request_id, "model": scored.classifier.tag, "stored": recorded.status,
                         "width": photo.width, "height": photo.height, "scale": scale,
                         "pixels_per_mm": photo.pixels_per_mm, "model_pixels_per_mm": model_pixels_per_mm,
                         "beans": beans})


def count_doubts(assessment: Assessment) -> None:
    """Count the request's doubtful beans in drybeans_doubtful_beans_total."""
    for flag, beans in assessment.counts.items():
        if beans:
            DOUBTFUL_BEANS.labels(flag=flag).inc(beans)


def refuse_inconsistent(rows: npt.NDArray[np.float64]) -> None:
    """InconsistentBeans (422) naming what disagrees in the first few beans whose features contradict each other
    (DRYBEANS_REJECT_INCONSISTENT); call it before recording."""
    bad = np.flatnonzero(~consistent(rows))
    if not len(bad):
        return
    described = "; ".join(f"bean {i}: " + ", ".join(
        f"{problem.feature} is {problem.sent:g} where {problem.rule} gives {problem.implied:g}"
        for problem in inconsistencies(rows[i])) for i in bad[:MAX_BEANS_NAMED])
    more = f" (and {len(bad) - MAX_BEANS_NAMED} more beans)" if len(bad) > MAX_BEANS_NAMED else ""
    raise errors.InconsistentBeans(errors.INCONSISTENT_BEANS.format(beans=described + more))


def refuse_unexplainable(classifier: Classifier, *, explain: bool) -> None:
    """CannotExplain (422) when explanations are asked of a model that has none; call it before recording."""
    if explain and not classifier.explains:
        raise CannotExplain(CANNOT_EXPLAIN.format(model=classifier.tag))


def _bean_predictions(classifier: Classifier, assessment: Assessment, labels: npt.NDArray[np.str_],
                      scores: npt.NDArray[np.float64], ids: list[int | None], *,
                      explain: bool) -> list[dict[str, Any]]:
    """Each bean's `BeanPrediction`, as plain data, in field order."""
    classes, rows, n = classifier.classes, assessment.rows, len(labels)
    sets = named_sets(assessment.sets, classes) if assessment.sets is not None else [None] * n
    in_distribution = (assessment.in_distribution.tolist() if assessment.in_distribution is not None
                       else [None] * n)
    ood_score = assessment.ood_score.tolist() if assessment.ood_score is not None else [None] * n
    answers = [{"label": label, "scores": dict(zip(classes, row_scores, strict=True)),
                "probabilities": dict(zip(classes, row_probabilities, strict=True)),
                "prediction_set": prediction_set, "needs_review": review, "consistent": checked,
                "in_distribution": inside, "ood_score": distance}
               for label, row_scores, row_probabilities, prediction_set, review, checked, inside, distance in zip(
                   labels.tolist(), scores.tolist(), assessment.probabilities.tolist(), sets,
                   assessment.needs_review.tolist(), assessment.consistent.tolist(), in_distribution, ood_score,
                   strict=True)]
    for i in np.flatnonzero(~assessment.consistent).tolist():  # what disagrees, before the distribution's fields
        answer = answers[i]
        distribution = {key: answer.pop(key) for key in ("in_distribution", "ood_score")}
        answer["inconsistencies"] = [problem.model_dump() for problem in assessment.inconsistencies(i)]
        answer.update(distribution)
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
