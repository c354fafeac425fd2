"""Calibrated probabilities and exact explanations on the served model's shape, against scikit-learn itself."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from model import training
from model.calibration import TemperatureScaling, brier_score, log_loss, vote_ties
from model.compiled_svc import CompiledLinearSVC
from model.evaluation import out_of_fold
from model.explanations import PairwiseExplainer


@pytest.fixture(scope="module")
def model(split) -> Pipeline:
    return training.build_pipeline().fit(split[0], split[2])


@pytest.fixture(scope="module")
def calibrator(model, split) -> TemperatureScaling:
    folds = out_of_fold(model, split[0], split[2])
    return TemperatureScaling.fit(folds.scores, np.searchsorted(model.classes_, split[2]))


def test_out_of_fold_scores_are_each_from_the_fold_that_held_the_bean_out(model, split) -> None:
    x_train, _, y_train, _ = split
    folds = out_of_fold(model, x_train[:2000], y_train[:2000])
    assert len(folds.accuracies) == 5 and folds.scores.shape == (2000, 7)
    # The first fold holds out the first stratified fifth: refit it alone and compare.
    train_rows, held_out = next(StratifiedKFold(5).split(x_train[:2000], y_train[:2000]))
    alone = training.build_pipeline().fit(x_train[train_rows], y_train[train_rows])
    np.testing.assert_allclose(folds.scores[held_out], alone.decision_function(x_train[held_out]), atol=1e-9)


def test_calibration_improves_the_holdout_log_loss(model, split, calibrator) -> None:
    _, x_test, _, y_test = split
    scores, truth = model.decision_function(x_test), np.searchsorted(model.classes_, y_test)
    calibrated = calibrator.probabilities(scores)
    assert 0.1 < calibrator.temperature < 1
    assert log_loss(calibrated, truth) < log_loss(TemperatureScaling(1.0).probabilities(scores), truth) < 1
    assert 0 < brier_score(calibrated, truth) < 0.2
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, rtol=1e-12)


def test_the_most_probable_variety_is_the_label_except_on_vote_ties(model, shared_csv, calibrator) -> None:
    x = pd.read_csv(shared_csv).drop(columns="Class").to_numpy(dtype=np.float64)
    scores = model.decision_function(x)
    probabilities = calibrator.probabilities(scores)
    assert np.array_equal(probabilities.argmax(axis=1), scores.argmax(axis=1))  # monotonic: never reorders
    differs = model.classes_[probabilities.argmax(axis=1)] != model.predict(x)
    assert differs.sum() < 30  # 14 of 13,611 beans with this model
    assert vote_ties(scores)[differs].all()  # and each of them is a tie on votes


def test_vote_ties_are_read_from_the_integer_part_of_the_scores() -> None:
    scores = np.array([[3.2, 3.1, 0.0], [2.9, 2.2, 1.0], [-0.3, 1.3, 1.1]])
    assert vote_ties(scores).tolist() == [True, False, True]


def test_probabilities_stay_finite_for_extreme_scores() -> None:
    probabilities = TemperatureScaling(0.01).probabilities(np.array([[1e6, -1e6, 0.0]]))
    np.testing.assert_array_equal(probabilities, [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("metadata", [{}, {"calibration": {"temperature": "hot"}}, {"calibration": {"temperature": 0}}])
def test_a_missing_or_bad_calibrator_is_refused(metadata) -> None:
    with pytest.raises(ValueError, match=r"calibrator|temperature"):
        TemperatureScaling.from_metadata(metadata)


def test_compiled_probabilities_equal_the_reference(model, split, calibrator) -> None:
    rows = np.vstack([split[1], np.random.default_rng(1).normal(model[0].mean_, 3 * model[0].scale_, (3000, 16))])
    _, scores = CompiledLinearSVC.from_pipeline(model).predict_with_scores(rows)
    reference = softmax(model.decision_function(rows) / calibrator.temperature, axis=1)
    np.testing.assert_allclose(calibrator.probabilities(scores), reference, rtol=1e-9, atol=1e-12)


def test_contributions_plus_intercept_are_the_decisive_pairwise_decision_value(model, shared_csv) -> None:
    x = pd.read_csv(shared_csv).drop(columns="Class").to_numpy(dtype=np.float64)
    labels, scores = model.predict(x), model.decision_function(x)
    index = np.searchsorted(model.classes_, labels)
    explained = PairwiseExplainer.from_pipeline(model).explain(x, index, scores)
    np.testing.assert_allclose(explained.contributions.sum(axis=1) + explained.intercept, explained.decision,
                               rtol=0, atol=1e-12)
    # scikit-learn's own one-vs-one values: pair (i, j), i < j, positive for i.
    ovo = copy.deepcopy(model).set_params(svc__decision_function_shape="ovo").decision_function(x)
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    expected = np.array([ovo[row, pairs.index((min(w, r), max(w, r)))] * (1 if w < r else -1)
                         for row, (w, r) in enumerate(zip(index, explained.runner_up, strict=True))])
    np.testing.assert_allclose(explained.decision, expected, rtol=1e-9, atol=1e-9)
    # The runner-up is the best other variety by score, and the label usually won its contest with it.
    others = scores.copy()
    others[np.arange(len(x)), index] = -np.inf
    assert np.array_equal(explained.runner_up, others.argmax(axis=1))
    assert (explained.decision > 0).mean() > 0.99
    # Each contribution is the pair's weight times the standardised value.
    standardised = model[0].transform(x[:1])
    row = pairs.index((min(index[0], explained.runner_up[0]), max(index[0], explained.runner_up[0])))
    sign = 1 if index[0] < explained.runner_up[0] else -1
    np.testing.assert_allclose(explained.contributions[0], sign * model[1].coef_[row] * standardised[0], rtol=1e-12)
