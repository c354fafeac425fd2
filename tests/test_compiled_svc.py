"""The compiled linear SVC against real scikit-learn: same labels always (ties, boundaries, extremes), close scores."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC

from model.compiled_svc import CompiledLinearSVC, SklearnPredictor, make_predictor, select_predictor
from tests.support import Split

SCORE_TOLERANCE = {"rtol": 1e-9, "atol": 1e-9}


def linear_svc_pipeline(**svc_params: object) -> Pipeline:
    """The served model's shape."""
    return Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="linear", **svc_params))])


@pytest.fixture(scope="module")
def beans(shared_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 13,611 rows of the real dataset: features in file order, labels."""
    frame = pd.read_csv(shared_csv)
    return frame.drop(columns="Class").to_numpy(dtype=np.float64), frame["Class"].to_numpy()


@pytest.fixture(scope="module")
def bean_model(split: Split) -> Pipeline:
    """The served model, fitted on the tutorial's split."""
    return linear_svc_pipeline().fit(split.x_train, split.y_train)


@pytest.fixture(scope="module")
def compiled(bean_model: Pipeline) -> CompiledLinearSVC:
    return CompiledLinearSVC.from_pipeline(bean_model)


@pytest.fixture(scope="module")
def toy3() -> Pipeline:
    """Three classes around the corners of a triangle, the last class ("c") appearing first in the data."""
    rng = np.random.default_rng(3)
    corners = {"c": (1.0, 1.7), "a": (0.0, 0.0), "b": (2.0, 0.0)}
    x = np.vstack([np.asarray(corner) + 0.4 * rng.normal(size=(40, 2)) for corner in corners.values()])
    y = np.repeat(list(corners), 40)
    return linear_svc_pipeline().fit(x, y)


def ovo_decisions(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    """scikit-learn's own one-vs-one decision values (libsvm's, for three or more classes)."""
    ovo = copy.deepcopy(pipeline).set_params(svc__decision_function_shape="ovo")
    return ovo.decision_function(x)


def libsvm_votes(decisions: np.ndarray, n_classes: int) -> np.ndarray:
    """libsvm's vote, written out: pair (i, j) gives i a vote when its value is > 0, else j."""
    votes = np.zeros((len(decisions), n_classes), dtype=int)
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    for column, (i, j) in enumerate(pairs):
        votes[:, i] += decisions[:, column] > 0
        votes[:, j] += decisions[:, column] <= 0
    return votes


def tied_rows(pipeline: Pipeline, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `x` where several classes share the most votes, and their votes."""
    votes = libsvm_votes(ovo_decisions(pipeline, x), len(pipeline.classes_))
    tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return x[tied], votes[tied]


def boundary_points(compiled: CompiledLinearSVC, x: np.ndarray) -> np.ndarray:
    """Each row of `x` moved onto the hyperplane between its two best classes (in raw feature units)."""
    standardised = (x - compiled.mean) / compiled.scale
    decisions = standardised @ compiled.weights.T + compiled.intercepts
    best_two = np.sort(np.argsort(-compiled.decision_function(x), axis=1)[:, :2], axis=1)
    n_classes = compiled.pair_matrix.shape[1]
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    pair_column = {pair: column for column, pair in enumerate(pairs)}
    columns = np.array([pair_column[(i, j)] for i, j in best_two])
    normals = compiled.weights[columns]
    rows = np.arange(len(x))
    on_plane = standardised - (decisions[rows, columns] / (normals**2).sum(axis=1))[:, None] * normals
    return on_plane * compiled.scale + compiled.mean


def assert_same_as_sklearn(compiled: CompiledLinearSVC, pipeline: Pipeline, x: np.ndarray) -> None:
    labels, scores = compiled.predict_with_scores(x)
    expected = pipeline.predict(x)
    assert labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(scores, pipeline.decision_function(x), **SCORE_TOLERANCE)


def test_whole_dataset_matches_pipeline_on_the_fast_path(beans, bean_model, compiled) -> None:
    x, _ = beans
    assert_same_as_sklearn(compiled, bean_model, x)
    assert not compiled.fallback_mask(x).any()  # real beans are decided by the matrix product alone


def test_predict_and_decision_function_are_the_two_halves(beans, compiled) -> None:
    x = beans[0][:500]
    labels, scores = compiled.predict_with_scores(x)
    np.testing.assert_array_equal(compiled.predict(x), labels)
    np.testing.assert_array_equal(compiled.decision_function(x), scores)
    assert scores.shape == (500, 7)


@pytest.mark.parametrize("bound", [1e-300, 1e-6, 1.0, 1e3, 1e6, 1e30, 1e150, 1e300])
def test_uniform_random_boxes(bean_model, compiled, bound) -> None:
    x = np.random.default_rng(int(np.log10(bound)) + 400).uniform(-bound, bound, size=(2000, 16))
    assert_same_as_sklearn(compiled, bean_model, x)


def test_mixed_magnitudes_and_signs(bean_model, compiled) -> None:
    rng = np.random.default_rng(7)
    magnitudes = 10.0 ** rng.uniform(-300, 300, size=(5000, 16))
    x = magnitudes * rng.choice([-1.0, 1.0], size=magnitudes.shape)
    assert_same_as_sklearn(compiled, bean_model, x)


def test_negative_and_realistic_rows(beans, bean_model, compiled) -> None:
    x = beans[0][:2000]
    assert_same_as_sklearn(compiled, bean_model, -x)
    rng = np.random.default_rng(11)
    assert_same_as_sklearn(compiled, bean_model, x * rng.uniform(0.5, 1.5, size=x.shape))


def test_points_on_boundaries_are_re_predicted_and_the_margin_is_needed(beans, bean_model, compiled) -> None:
    points = boundary_points(compiled, beans[0])
    assert compiled.fallback_mask(points).all()
    np.testing.assert_array_equal(compiled.predict(points), bean_model.predict(points))
    # Trusting the matrix product alone here would flip thousands of labels: the margin is what makes it exact.
    standardised = (points - compiled.mean) / compiled.scale
    votes = libsvm_votes(standardised @ compiled.weights.T + compiled.intercepts, len(compiled.classes))
    assert (compiled.classes[np.argmax(votes, axis=1)] != bean_model.predict(points)).sum() > 100


def test_points_one_ulp_from_boundaries(beans, bean_model, compiled) -> None:
    points = boundary_points(compiled, beans[0][::40])
    nudged = []
    for feature in range(points.shape[1]):
        for direction in (-np.inf, np.inf):
            moved = points.copy()
            moved[:, feature] = np.nextafter(points[:, feature], direction)
            nudged.append(moved)
    assert_same_as_sklearn(compiled, bean_model, np.vstack(nudged))


def test_seven_class_vote_ties_go_to_the_first_class_on_the_fast_path(bean_model, compiled) -> None:
    scaler = bean_model[0]
    standard = np.random.default_rng(5).normal(0.0, 3.0, size=(30_000, 16))
    x, votes = tied_rows(bean_model, standard * scaler.scale_ + scaler.mean_)
    assert len(x) > 1000
    expected = bean_model.predict(x)
    # The rule being reproduced: the first class (classes_ order) among those with the most votes.
    np.testing.assert_array_equal(expected, bean_model.classes_[np.argmax(votes, axis=1)])
    assert not compiled.fallback_mask(x).any()
    np.testing.assert_array_equal(compiled.predict(x), expected)


def test_three_class_cyclic_ties_follow_classes_order_not_data_order(toy3) -> None:
    compiled = CompiledLinearSVC.from_pipeline(toy3)
    # The three pairwise lines of independently trained pairs enclose a small triangle where the votes cycle.
    corners = np.array([np.linalg.solve(compiled.weights[pair], -compiled.intercepts[pair])
                        for pair in ([0, 1], [0, 2], [1, 2])]) * compiled.scale + compiled.mean
    x = np.random.default_rng(9).dirichlet([1.0, 1.0, 1.0], size=2000) @ corners
    assert (libsvm_votes(ovo_decisions(toy3, x), 3) == 1).all()  # one vote each: a three-way tie
    assert (toy3.predict(x) == "a").all()  # classes_[0], though "c" came first in the training data
    assert not compiled.fallback_mask(x).any()
    np.testing.assert_array_equal(compiled.predict(x), toy3.predict(x))


def test_three_class_point_on_every_boundary() -> None:
    corners = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, np.sqrt(3.0)]])
    cross = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [-0.1, 0.0], [0.0, -0.1]])
    pipeline = linear_svc_pipeline().fit((corners[:, None] + cross).reshape(-1, 2), np.repeat(["x", "y", "z"], 5))
    compiled = CompiledLinearSVC.from_pipeline(pipeline)
    # Symmetric classes: the three pairwise boundaries meet in one point, equidistant from all classes.
    standardised = np.linalg.solve(compiled.weights[:2], -compiled.intercepts[:2])
    centre = standardised * compiled.scale + compiled.mean
    x = np.vstack([centre] + [np.nextafter(centre, centre + step) for step in ([1, 0], [0, 1], [-1, -1])])
    assert np.abs(ovo_decisions(pipeline, x)).max() < 1e-12
    assert compiled.fallback_mask(x).all()
    np.testing.assert_array_equal(compiled.predict(x), pipeline.predict(x))


def test_exactly_zero_decision_votes_for_the_second_class() -> None:
    pipeline = linear_svc_pipeline().fit(np.array([[-2.0], [-1.0], [1.0], [2.0]]), ["neg", "neg", "pos", "pos"])
    assert pipeline.decision_function(np.array([[0.0]]))[0] == 0.0  # symmetric data: an exact zero
    compiled = CompiledLinearSVC.from_pipeline(pipeline)
    x = np.array([[0.0], [5e-324], [-5e-324], [1e-300], [-1e-300]])
    np.testing.assert_array_equal(compiled.predict(x), pipeline.predict(x))
    assert compiled.predict(x[:1])[0] == "pos"


def test_two_classes_scores_are_the_binary_decision_function() -> None:
    rng = np.random.default_rng(13)
    x = np.vstack([rng.normal(0, 1, (60, 3)), rng.normal(1.5, 1, (60, 3))])
    pipeline = linear_svc_pipeline().fit(x, np.repeat([3, 8], 60))
    compiled = CompiledLinearSVC.from_pipeline(pipeline)
    probe = rng.normal(0.75, 3, (5000, 3))
    assert_same_as_sklearn(compiled, pipeline, probe)
    assert compiled.decision_function(probe).shape == (5000,)


@pytest.mark.parametrize("scaler", [StandardScaler(with_mean=False), StandardScaler(with_std=False),
                                    StandardScaler(with_mean=False, with_std=False)])
def test_scaler_options(scaler) -> None:
    rng = np.random.default_rng(17)
    offsets = np.repeat([[0.0, 0.0, 0.0, 0.0], [1.5, -1.0, 0.5, 0.0], [0.0, 1.5, -1.0, 1.0]], 100, axis=0)
    x = rng.normal([5.0, -3.0, 10.0, 0.0], [1.0, 2.0, 0.5, 3.0], size=(300, 4)) + offsets
    pipeline = Pipeline([("scaler", scaler), ("svc", SVC(kernel="linear"))]).fit(x, np.repeat([0, 1, 2], 100))
    probe = rng.normal([5.0, -3.0, 10.0, 0.0], [3.0, 6.0, 1.5, 9.0], size=(5000, 4))
    assert_same_as_sklearn(CompiledLinearSVC.from_pipeline(pipeline), pipeline, probe)


def test_integer_input_is_cast_like_sklearn(beans, bean_model, compiled) -> None:
    x = np.rint(beans[0][:1000] * 1000).astype(np.int64)
    np.testing.assert_array_equal(compiled.predict(x), bean_model.predict(x))


@pytest.mark.parametrize("x", [np.zeros(16), np.zeros((3, 15)), np.zeros((0, 16))], ids=["1-D", "columns", "empty"])
def test_bad_shapes_raise(compiled, x) -> None:
    with pytest.raises(ValueError, match="feature columns"):
        compiled.predict(x)


def test_non_finite_input_raises_like_sklearn(beans, compiled) -> None:
    x = beans[0][:3].copy()
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compiled.predict(x)


def fitted(model: object) -> object:
    x = np.random.default_rng(0).normal(size=(60, 4))
    y = np.repeat([0, 1, 2], 20)
    return model.fit(x, y)  # type: ignore[attr-defined]


def sparse_fitted() -> Pipeline:
    x = sparse.random(60, 4, density=0.5, random_state=0, format="csr")
    return Pipeline([("scaler", StandardScaler(with_mean=False)), ("svc", SVC(kernel="linear"))]).fit(
        x, np.repeat([0, 1, 2], 20))


@pytest.mark.parametrize(("model", "message"), [
    (lambda: fitted(SVC(kernel="linear")), "expected a sklearn Pipeline"),
    (lambda: fitted(Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="rbf"))])), "kernel='rbf'"),
    (lambda: fitted(Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="poly"))])), "kernel='poly'"),
    (lambda: fitted(Pipeline([("scaler", MinMaxScaler()), ("svc", SVC(kernel="linear"))])),
     r"\[MinMaxScaler, SVC\]"),
    (lambda: fitted(Pipeline([("scaler", StandardScaler()), ("svc", LinearSVC())])), r"\[StandardScaler, LinearSVC\]"),
    (lambda: fitted(Pipeline([("a", StandardScaler()), ("b", StandardScaler()), ("svc", SVC(kernel="linear"))])),
     r"\[StandardScaler, StandardScaler, SVC\]"),
    (lambda: fitted(linear_svc_pipeline(decision_function_shape="ovo")), "decision_function_shape='ovo'"),
    (lambda: fitted(linear_svc_pipeline(break_ties=True)), "break_ties=True"),
    (lambda: linear_svc_pipeline(), "not fitted"),
    (sparse_fitted, "sparse"),
], ids=["bare-svc", "rbf", "poly", "minmax", "linearsvc", "three-steps", "ovo", "break-ties", "unfitted", "sparse"])
def test_unsupported_models_raise_a_clear_error(model, message) -> None:
    with pytest.raises(ValueError, match=message):
        CompiledLinearSVC.from_pipeline(model())


def test_verified_compiled_predictor_is_selected(beans, bean_model) -> None:
    predictor = make_predictor(bean_model, beans[0][:300])
    assert isinstance(predictor, CompiledLinearSVC)


def test_corrupted_weights_fail_verification_and_scikit_learn_serves(beans, bean_model, compiled, caplog) -> None:
    probe = beans[0][:300]
    weights = compiled.weights.copy()
    weights[0, 0] += 0.5  # one wrong primal weight, as a bad compilation would produce
    corrupted = dataclasses.replace(compiled, weights=weights)
    assert not corrupted.verify(probe)
    with caplog.at_level(logging.WARNING, logger="compiled_svc"):
        predictor = select_predictor(corrupted, probe)
    assert isinstance(predictor, SklearnPredictor)
    assert "disagrees with scikit-learn" in caplog.text
    labels, scores = predictor.predict_with_scores(probe)
    np.testing.assert_array_equal(labels, bean_model.predict(probe))
    np.testing.assert_array_equal(scores, bean_model.decision_function(probe))


def test_a_swapped_model_fails_verification(beans, bean_model, compiled) -> None:
    x, y = beans
    other = linear_svc_pipeline(C=0.01).fit(x[::5], y[::5])
    assert not dataclasses.replace(compiled, pipeline=other).verify(x[:2000])


def test_uncompilable_model_is_served_by_scikit_learn(beans, caplog) -> None:
    x, y = beans[0][::20], beans[1][::20]
    pipeline = Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="rbf"))]).fit(x, y)
    with caplog.at_level(logging.WARNING, logger="compiled_svc"):
        predictor = make_predictor(pipeline, x[:50])
    assert isinstance(predictor, SklearnPredictor)
    assert "kernel='rbf'" in caplog.text
    np.testing.assert_array_equal(predictor.predict(x), pipeline.predict(x))
