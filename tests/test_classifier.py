"""The service's classifier: metadata checked against the service, compiled inference chosen when exact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bentoml
import numpy as np
import pytest

from data.readers import read_dataset
from model.classifier import Classifier, ModelMismatch
from model.compiled_svc import CompiledLinearSVC


@pytest.fixture(scope="module")
def model(trained_model: subprocess.CompletedProcess[str]) -> bentoml.Model:
    return bentoml.models.get("drybean_svc:latest")


def test_serves_the_whole_dataset_with_compiled_inference_exactly(model: bentoml.Model, shared_csv: Path) -> None:
    pipeline = bentoml.sklearn.load_model(model)
    classifier = Classifier.from_metadata(pipeline, str(model.tag), model.info.metadata)
    assert isinstance(classifier.predictor, CompiledLinearSVC)
    rows = read_dataset(shared_csv).features.to_numpy()
    labels, scores = classifier.classify(rows)
    assert np.array_equal(labels, pipeline.predict(rows))
    assert np.allclose(scores, pipeline.decision_function(rows), rtol=0, atol=1e-9)


def test_probabilities_and_explanations_of_the_served_model(model: bentoml.Model, shared_csv: Path) -> None:
    pipeline = bentoml.sklearn.load_model(model)
    classifier = Classifier.from_metadata(pipeline, str(model.tag), model.info.metadata)
    rows = read_dataset(shared_csv).features.to_numpy()[::7]
    labels, scores = classifier.classify(rows)
    probabilities = classifier.probabilities(scores)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (np.asarray(classifier.classes)[probabilities.argmax(axis=1)] == labels).mean() > 0.998
    explained = classifier.explain(rows, labels, scores)
    assert np.allclose(explained.contributions.sum(axis=1) + explained.intercept, explained.decision, atol=1e-12)
    assert (np.asarray(classifier.classes)[explained.runner_up] != labels).all()  # the runner-up is another


@pytest.mark.parametrize(("key", "value", "message"), [
    ("features", ["Area"], "expects features"),
    ("classes", ["SIRA", "CALI"], "metadata classes"),
    ("sklearn_version", "0.24.2", "trained with scikit-learn 0.24.2"),
    ("calibration", None, "has no calibrator"),
])
def test_a_model_that_does_not_fit_the_service_is_refused(model: bentoml.Model, key: str, value: object,
                                                          message: str) -> None:
    metadata = {**model.info.metadata, key: value}
    with pytest.raises(ModelMismatch, match=message):
        Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), metadata)
