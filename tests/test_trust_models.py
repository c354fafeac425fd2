"""Out-of-distribution scores and conformal prediction sets, fitted as train.py fits them on the real training split
and judged on its holdout; the model train.py saves carries both, and metrics.json their holdout measures."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import bentoml
import numpy as np
import pytest
import yaml

from data.schema import CLASSES, EXAMPLE_ROW, FEATURES
from model.calibration import TemperatureScaling
from model.compiled_svc import exact_predictor
from model.evaluation import out_of_fold
from model.training import build_pipeline
from tests.support import Split
from trust.conformal import ConformalSets
from trust.ood import MEASURED, OutOfDistribution

COVERAGES = (0.9, 0.95, 0.99)
TOLERANCE = 0.015  # the target: holdout coverage within ±1.5% of the requested


@dataclass(frozen=True)
class Fitted:
    """What train.py fits, refitted here on its split, with the holdout's predictions."""

    x_train: np.ndarray
    y_train: np.ndarray  # indices into CLASSES
    x_test: np.ndarray
    y_test: np.ndarray
    predicted: np.ndarray  # the holdout's labels, as indices
    probabilities: np.ndarray  # the holdout's calibrated probabilities
    conformal: ConformalSets
    ood: OutOfDistribution


@pytest.fixture(scope="module")
def fitted(split: Split) -> Fitted:
    x_train, x_test, y_train, y_test = split
    pipeline = build_pipeline()
    folds = out_of_fold(pipeline, x_train, y_train, fit_pipeline=True)
    y_index = np.searchsorted(CLASSES, y_train)
    calibrator = TemperatureScaling.fit(folds.scores, y_index)
    out_of_fold_probabilities = calibrator.probabilities(folds.scores)
    labels, scores = exact_predictor(pipeline).predict_with_scores(x_test)
    return Fitted(x_train, y_index, x_test, np.searchsorted(CLASSES, y_test), np.searchsorted(CLASSES, labels),
                  calibrator.probabilities(scores), ConformalSets.fit(out_of_fold_probabilities, y_index),
                  OutOfDistribution.fit(x_train, y_index, out_of_fold_probabilities.argmax(axis=1)))


def covered(sets: np.ndarray, y_index: np.ndarray) -> float:
    return float(sets[np.arange(len(sets)), y_index].mean())


@pytest.mark.parametrize("coverage", COVERAGES)
def test_holdout_coverage_is_within_1_5_percent_of_the_requested(fitted: Fitted, coverage: float) -> None:
    sets = fitted.conformal.sets(fitted.probabilities, coverage)
    assert sets.shape == (4084, 7) and sets.dtype == bool
    assert abs(covered(sets, fitted.y_test) - coverage) <= TOLERANCE


def test_sets_grow_with_the_coverage_and_may_be_empty(fitted: Fitted) -> None:
    sizes = [fitted.conformal.sets(fitted.probabilities, c).sum(axis=1) for c in COVERAGES]
    assert (sizes[0] == 0).any()  # below the top-1 accuracy (93%), some beans get no variety at all
    assert (sizes[0] <= sizes[1]).all() and (sizes[1] <= sizes[2]).all()
    assert sizes[0].mean() < 1 < sizes[1].mean() < sizes[2].mean() < 3


def test_calibration_beans_are_covered_at_least_as_asked(fitted: Fitted) -> None:
    oof_like = ConformalSets.fit(fitted.probabilities, fitted.y_test)  # calibrated on the holdout itself
    for coverage in (0.5, 0.731, 0.9, 0.95, 0.99, 0.999):
        share = covered(oof_like.sets(fitted.probabilities, coverage), fitted.y_test)
        assert coverage <= share <= coverage + 0.005


def test_a_coverage_off_the_grid_takes_the_next_grid_point_up(fitted: Fitted) -> None:
    conformal = fitted.conformal
    assert conformal.threshold(0.95) == conformal.thresholds[450]
    assert conformal.threshold(0.9001) == conformal.threshold(0.901) <= conformal.threshold(0.9)  # a larger set
    assert conformal.threshold(0.5) == conformal.thresholds[0]
    assert conformal.threshold(0.999) == conformal.thresholds[-1]
    for refused in (0.4999, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"outside \[0.5, 0.999\]"):
            conformal.threshold(refused)


def test_metadata_round_trips_through_yaml_with_identical_outputs(fitted: Fitted) -> None:
    conformal = ConformalSets.from_metadata(yaml.safe_load(yaml.safe_dump(fitted.conformal.to_metadata())))
    ood = OutOfDistribution.from_metadata(yaml.safe_load(yaml.safe_dump(fitted.ood.to_metadata())))
    assert conformal == fitted.conformal
    for coverage in (0.5, 0.9, 0.9234, 0.95, 0.99, 0.999):
        assert np.array_equal(conformal.sets(fitted.probabilities, coverage),
                              fitted.conformal.sets(fitted.probabilities, coverage))
    assert ood.threshold == fitted.ood.threshold
    assert np.array_equal(ood.score(fitted.x_test, fitted.predicted), fitted.ood.score(fitted.x_test, fitted.predicted))


def test_a_few_beans_at_a_time_score_as_in_one_batch(fitted: Fitted) -> None:
    whole = fitted.ood.score(fitted.x_test, fitted.predicted)  # grouped by variety
    few = np.concatenate([fitted.ood.score(fitted.x_test[start:start + 7], fitted.predicted[start:start + 7])
                          for start in range(0, len(fitted.x_test), 7)])  # gathered per bean
    np.testing.assert_allclose(few, whole, rtol=1e-12)


def test_malformed_metadata_is_refused_with_what_is_wrong(fitted: Fitted) -> None:
    with pytest.raises(ValueError, match=r"trust\.conformal"):
        ConformalSets.from_metadata({"thresholds": [0.5] * 10, "calibration_beans": 10})
    with pytest.raises(ValueError, match=r"trust\.ood"):
        OutOfDistribution.from_metadata({"threshold": 10.0})
    with pytest.raises(ValueError, match=r"trust\.ood.*Area, Perimeter"):
        OutOfDistribution.from_metadata({**fitted.ood.to_metadata(), "measurements": list(FEATURES)})


def test_the_score_is_the_mahalanobis_distance_to_the_variety(fitted: Fitted) -> None:
    columns = [FEATURES.index(name) for name in MEASURED]
    beans = fitted.x_test[:300]
    varieties = np.arange(300) % 7  # any variety, not only the predicted one
    expected = []
    for bean, variety in zip(np.log(beans[:, columns]), varieties, strict=True):
        training = np.log(fitted.x_train[fitted.y_train == variety][:, columns])
        offset = bean - training.mean(axis=0)
        expected.append(np.sqrt(offset @ np.linalg.solve(np.cov(training, rowvar=False), offset)))
    batch = fitted.ood.score(beans, varieties)
    np.testing.assert_allclose(batch, expected, rtol=1e-9)
    alone = [fitted.ood.score(beans[i:i + 1], varieties[i:i + 1])[0] for i in range(7)]
    np.testing.assert_allclose(alone, batch[:7], rtol=1e-13)  # BLAS may round a lone row's product differently


def test_few_holdout_beans_are_out_of_distribution(fitted: Fitted) -> None:
    beyond = fitted.ood.score(fitted.x_test, fitted.predicted) > fitted.ood.threshold
    assert 0 < beyond.mean() <= 0.005  # the threshold is the training beans' 99.9th percentile
    rounded = np.round(fitted.x_test, 2)  # sent at the tutorial's precision: ShapeFactor2 as 0.0
    assert (fitted.ood.score(rounded, fitted.predicted) > fitted.ood.threshold).mean() <= 0.005
    tutorial = fitted.ood.score(np.array([EXAMPLE_ROW]), np.array([CLASSES.index("DERMASON")]))[0]
    assert tutorial <= fitted.ood.threshold


def test_foreign_beans_are_out_of_distribution(fitted: Fitted) -> None:
    rng = np.random.default_rng(22)
    low, high = fitted.x_train.min(axis=0), fitted.x_train.max(axis=0)
    foreign = {"every feature x1.5": fitted.x_test * 1.5, "every feature x1.1": fitted.x_test * 1.1,
               "uniform within the training ranges": rng.uniform(low, high, size=(2000, 16))}
    pipeline = build_pipeline().fit(fitted.x_train, np.asarray(CLASSES)[fitted.y_train])
    for name, beans in foreign.items():
        predicted = np.searchsorted(CLASSES, pipeline.predict(beans))
        assert (fitted.ood.score(beans, predicted) > fitted.ood.threshold).mean() >= 0.99, name
    zero_area = fitted.x_test[:1].copy()
    zero_area[0, FEATURES.index("Area")] = 0.0
    score = fitted.ood.score(zero_area, fitted.predicted[:1])[0]
    assert np.isfinite(score) and score > 100 * fitted.ood.threshold


def saved_model(trained_model: subprocess.CompletedProcess[str]) -> bentoml.Model:
    tag = re.search(r"^saved (drybean_svc:\w+)$", trained_model.stdout, re.MULTILINE).group(1)
    return bentoml.models.get(tag)


def test_the_model_train_py_saves_carries_what_was_fitted(trained_model: subprocess.CompletedProcess[str],
                                                         fitted: Fitted) -> None:
    trust = saved_model(trained_model).info.metadata["trust"]
    assert trust["ood"] == fitted.ood.to_metadata() and trust["conformal"] == fitted.conformal.to_metadata()
    ood, conformal = OutOfDistribution.from_metadata(trust["ood"]), ConformalSets.from_metadata(trust["conformal"])
    assert np.array_equal(ood.score(fitted.x_test, fitted.predicted), fitted.ood.score(fitted.x_test, fitted.predicted))
    assert conformal == fitted.conformal


def test_metrics_json_reports_coverage_and_the_out_of_distribution_share(
        trained_model: subprocess.CompletedProcess[str], fitted: Fitted) -> None:
    metrics = json.loads((Path(trained_model.args) / "metrics.json").read_text())
    assert set(metrics["conformal"]) == {"0.9", "0.95", "0.99"}
    for coverage in COVERAGES:
        reported = metrics["conformal"][str(coverage)]
        sets = fitted.conformal.sets(fitted.probabilities, coverage)
        assert reported["coverage"] == pytest.approx(covered(sets, fitted.y_test))
        assert abs(reported["coverage"] - coverage) <= TOLERANCE
        assert reported["mean_set_size"] == pytest.approx(sets.sum(axis=1).mean())
        assert reported["threshold"] == fitted.conformal.threshold(coverage)
    ood = metrics["out_of_distribution"]
    assert ood["threshold"] == fitted.ood.threshold
    assert 0 < ood["holdout_beans"] <= 0.005 * 4084
    assert ood["holdout_share"] == pytest.approx(ood["holdout_beans"] / 4084)
    assert saved_model(trained_model).info.metadata["metrics"]["conformal"] == metrics["conformal"]
