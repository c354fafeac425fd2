"""`/v1/classify`'s fast encoder writes exactly the document its pydantic schema describes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bentoml
import numpy as np
import pytest

from api.schemas import ClassifyResponse, StoreStatus
from data.readers import read_dataset
from model.classifier import Classifier
from rollout.registry import Scored
from serving.answers import Answered, classify_answer
from serving.recording import Recorded
from trust.assessment import assess


@pytest.fixture(scope="module")
def classifier(trained_model: subprocess.CompletedProcess[str]) -> Classifier:
    model = bentoml.models.get("drybean_svc:latest")
    return Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), model.info.metadata)


@pytest.mark.parametrize("explain", [False, True])
@pytest.mark.parametrize("status", ["skipped", "spooled", "committed"])
def test_the_answer_is_the_schemas_own_serialisation(classifier: Classifier, shared_csv: Path, explain: bool,
                                                     status: StoreStatus) -> None:
    rows = read_dataset(shared_csv).features.to_numpy()[::5]  # every variety, 2,723 beans
    labels, scores = classifier.classify(rows)
    ids: list[int | None] = list(range(10**9, 10**9 + len(rows))) if status == "committed" else []
    recorded = Recorded("" if status == "skipped" else "a1b2c3", status, ids)

    rows[0, 13] *= 10  # one bean with a typo: its inconsistencies are in the answer too
    assessment = assess(classifier, rows, labels, classifier.probabilities(scores))
    encoded = classify_answer(Answered(Scored(classifier, labels, scores, 0.001, "a1b2c3", None), recorded, assessment),
                              explain=explain)

    # What pydantic would have sent: validate the encoded document, serialise it again, compare the bytes.
    assert ClassifyResponse.model_validate_json(encoded).model_dump_json().encode() == encoded
    answer = ClassifyResponse.model_validate_json(encoded)
    assert [bean.label for bean in answer.predictions] == labels.tolist()
    assert [list(bean.scores.values()) for bean in answer.predictions] == scores.tolist()
    assert [bean.record_id for bean in answer.predictions] == (recorded.ids or [None] * len(rows))
    assert all((bean.explanation is not None) == explain for bean in answer.predictions)
    assert np.allclose([sum(bean.probabilities.values()) for bean in answer.predictions], 1.0)
    assert [bean.consistent for bean in answer.predictions] == assessment.consistent.tolist()
    assert answer.predictions[0].inconsistencies and answer.predictions[1].inconsistencies is None
    assert [bean.needs_review for bean in answer.predictions] == assessment.needs_review.tolist()
    assert all(bean.prediction_set is not None and bean.ood_score is not None for bean in answer.predictions)
