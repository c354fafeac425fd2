"""Compiled inference for a fitted ``Pipeline([StandardScaler(), SVC(kernel="linear")])``.

scikit-learn's ``SVC.predict`` has libsvm compute every one-vs-one decision value as a sum over all support
vectors of ``alpha_k * <s, sv_k>``. With a linear kernel each of those sums is one dot product with the pair's
primal weights (``SVC.coef_``), so a whole batch is one small matrix product followed by libsvm's vote. This
module does exactly that and returns the same labels as ``Pipeline.predict``, ties included:

* the vote and its tie-break are libsvm's (see ``_votes`` and ``_first_most_voted``);
* a row with a decision value too close to zero for its sign to be certain under the rounding of both
  computations is re-predicted by the pipeline itself (see ``_error_model``), so agreement is exact by
  construction rather than by luck.

The saved model stays a plain scikit-learn pipeline: this is a serving-time accelerator built from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

logger = logging.getLogger(__name__)

Float64Array = npt.NDArray[np.float64]
Labels = npt.NDArray[Any]

_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2  # u = 2**-53: |fl(a op b) - (a op b)| <= u |a op b| without underflow
_SUBNORMAL = float(np.finfo(np.float64).smallest_subnormal)  # bound on the absolute error of an underflowing product
_MAX_FLOAT = float(np.finfo(np.float64).max)


class SVCPredictor(Protocol):
    """What the service holds: the compiled predictor or its scikit-learn fallback."""

    @property
    def classes(self) -> Labels:
        """The class labels, in the order of the score columns."""
        ...

    def predict(self, X: npt.ArrayLike) -> Labels:
        """Labels, identical to ``Pipeline.predict``."""
        ...

    def decision_function(self, X: npt.ArrayLike) -> Float64Array:
        """Scores as ``Pipeline.decision_function`` (``decision_function_shape="ovr"``)."""
        ...

    def predict_with_scores(self, X: npt.ArrayLike) -> tuple[Labels, Float64Array]:
        """Labels and scores of the same rows together."""
        ...


class SklearnPredictor:
    """The reference predictor: delegates every call to the fitted pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def classes(self) -> Labels:
        """The class labels, in the order of the score columns."""
        return np.asarray(self.pipeline.classes_)

    def predict(self, X: npt.ArrayLike) -> Labels:
        """Labels from ``Pipeline.predict``."""
        return np.asarray(self.pipeline.predict(X))

    def decision_function(self, X: npt.ArrayLike) -> Float64Array:
        """Scores from ``Pipeline.decision_function``."""
        return np.asarray(self.pipeline.decision_function(X), dtype=np.float64)

    def predict_with_scores(self, X: npt.ArrayLike) -> tuple[Labels, Float64Array]:
        """Labels and scores from the pipeline (two passes)."""
        return self.predict(X), self.decision_function(X)


@dataclass(frozen=True, eq=False)
class CompiledLinearSVC:
    """One-vs-one linear SVC as a matrix product plus libsvm's vote; uncertain rows go back to the pipeline."""

    pipeline: Pipeline
    classes: Labels
    mean: Float64Array  # (n_features,) what StandardScaler subtracts (zeros when with_mean=False)
    scale: Float64Array  # (n_features,) what StandardScaler divides by (ones when with_std=False)
    weights: Float64Array  # (n_pairs, n_features) in libsvm's orientation: > 0 votes for the pair's first class
    intercepts: Float64Array  # (n_pairs,)
    pair_matrix: Float64Array  # (n_pairs, n_classes): +1 for the pair's first class, -1 for its second
    error_weights: Float64Array  # (n_pairs + 1, n_features): sum of |alpha sv| per pair, then a row of ones
    relative_error: float  # see _error_model for the certainty test these three constants define
    underflow_error: float
    max_safe_l1: float

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> CompiledLinearSVC:
        """Compile a fitted ``Pipeline([StandardScaler(), SVC(kernel="linear")])``; ValueError for anything else."""
        scaler, svc = _supported_steps(pipeline)
        n_features = int(svc.n_features_in_)
        mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else np.zeros(n_features)
        scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else np.ones(n_features)
        # scikit-learn flips coef_ and intercept_ for two classes (so that > 0 means classes_[1]); libsvm's own
        # values, which decide the vote, are the unflipped ones.
        sign = -1.0 if len(svc.classes_) == 2 else 1.0
        error_weights, relative, underflow, max_l1 = _error_model(svc)
        return cls(
            pipeline=pipeline,
            classes=np.asarray(svc.classes_),
            mean=mean,
            scale=scale,
            weights=sign * np.asarray(svc.coef_, dtype=np.float64),
            intercepts=sign * np.asarray(svc.intercept_, dtype=np.float64),
            pair_matrix=_pair_matrix(len(svc.classes_)),
            error_weights=error_weights,
            relative_error=relative,
            underflow_error=underflow,
            max_safe_l1=max_l1,
        )

    def predict(self, X: npt.ArrayLike) -> Labels:
        """Labels, identical to ``pipeline.predict(np.asarray(X, dtype=np.float64))``."""
        X = self._validate(X)
        decisions, certain = self._decisions(X)
        labels = self.classes[_first_most_voted(self._votes(decisions))]
        if not certain.all():
            labels[~certain] = self.pipeline.predict(X[~certain])
        return labels

    def decision_function(self, X: npt.ArrayLike) -> Float64Array:
        """Scores equal (to float tolerance) to ``pipeline.decision_function`` with shape ``"ovr"``."""
        return self.predict_with_scores(X)[1]

    def predict_with_scores(self, X: npt.ArrayLike) -> tuple[Labels, Float64Array]:
        """Labels and ovr scores from one matrix product (uncertain rows from the pipeline)."""
        X = self._validate(X)
        decisions, certain = self._decisions(X)
        votes = self._votes(decisions)
        labels = self.classes[_first_most_voted(votes)]
        scores = self._scores(decisions, votes)
        if not certain.all():
            labels[~certain] = self.pipeline.predict(X[~certain])
            scores[~certain] = self.pipeline.decision_function(X[~certain])
        return labels, scores

    def fallback_mask(self, X: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which rows are too close to a decision boundary, hence re-predicted by the pipeline."""
        return ~self._decisions(self._validate(X))[1]

    def verify(self, probe: npt.ArrayLike) -> bool:
        """Whether labels equal and scores are close to the pipeline's on `probe` (a start-up self-check)."""
        probe = self._validate(probe)
        labels, scores = self.predict_with_scores(probe)
        expected_labels = self.pipeline.predict(probe)
        expected_scores = self.pipeline.decision_function(probe)
        return (
            labels.dtype == expected_labels.dtype
            and np.array_equal(labels, expected_labels)
            and scores.shape == expected_scores.shape
            # Equal weights leave rounding differences only (~1e-12 on the Dry Bean model, scores being votes
            # plus a squashed sum of decisions): 1e-8 is far above that and far below any real discrepancy.
            and bool(np.allclose(scores, expected_scores, rtol=1e-8, atol=1e-8))
        )

    def _validate(self, X: npt.ArrayLike) -> Float64Array:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != self.weights.shape[1]:
            raise ValueError(f"expected a non-empty 2-D array with {self.weights.shape[1]} feature columns, "
                             f"got shape {X.shape}")
        return X

    def _decisions(self, X: Float64Array) -> tuple[Float64Array, npt.NDArray[np.bool_]]:
        """One-vs-one decision values (n_pairs, n_rows) and which rows have all their signs certain."""
        # The same two IEEE operations as StandardScaler.transform, so `standardised` is bit-identical to what
        # libsvm receives and the only rounding difference left is inside the dot products. (Folding the mean
        # into the intercepts would instead cancel terms ~200x larger than the result on this dataset's Solidity
        # and ShapeFactor columns, widening the uncertainty margin as much.) Pairs x rows layout: the reductions
        # over pairs below then run across contiguous rows, ~10x faster than along short rows.
        # In-place updates below only spare large temporaries; they round exactly as their out-of-place forms.
        standardised = X - self.mean
        standardised /= self.scale
        decisions = self.weights @ standardised.T
        decisions += self.intercepts[:, None]
        error_terms = self.error_weights @ np.abs(standardised).T
        l1 = error_terms[-1]  # NaN for NaN input: every comparison below is then False
        margin = error_terms[:-1]
        margin += np.abs(self.intercepts)[:, None]
        margin *= self.relative_error
        margin += self.underflow_error * (1 + l1)
        certain = (l1 <= self.max_safe_l1) & (np.abs(decisions) > margin).all(axis=0)
        return decisions, certain

    def _votes(self, decisions: Float64Array) -> Float64Array:
        """libsvm's one-vs-one vote counts (n_classes, n_rows)."""
        # libsvm (svm_predict_values): pair (i, j), i < j, votes for i when its value is > 0, else for j. Class
        # c is the second member of exactly c pairs, (0, c) ... (c-1, c), and wins those its first member does
        # not: votes[c] = (wins as first member) + c - (first-member wins against c), i.e. the product below.
        # Counts are small integers, exact in float64.
        wins_first = (decisions > 0).astype(np.float64)
        return self.pair_matrix.T @ wins_first + np.arange(len(self.classes), dtype=np.float64)[:, None]

    def _scores(self, decisions: Float64Array, votes: Float64Array) -> Float64Array:
        """scikit-learn's ovr scores, ``_ovr_decision_function(decisions < 0, -decisions, n_classes)``."""
        if len(self.classes) == 2:
            return -decisions[0]  # scikit-learn returns the (sign-flipped) binary decision value itself
        # That function votes for i when a value is >= 0 (libsvm: > 0); the two differ only at exactly 0, which
        # no certain row has (|value| > margin > 0), and uncertain rows are replaced by the pipeline's scores.
        confidence = self.pair_matrix.T @ decisions
        return (votes + confidence / (3 * (np.abs(confidence) + 1))).T


def _first_most_voted(votes: Float64Array) -> npt.NDArray[np.intp]:
    """Per column, the first class with the most votes: libsvm's tie-break."""
    # libsvm scans `if (vote[i] > vote[vote_max_idx])`: strictly greater, so the earliest class keeps a tie.
    # scikit-learn's libsvm numbers classes in classes_ order, whatever their order in the training data
    # (tests/test_compiled_svc.py checks both on real fits). np.argmax also returns the first maximum.
    return np.argmax(votes, axis=0)


def _supported_steps(pipeline: Any) -> tuple[StandardScaler, SVC]:
    """The scaler and SVC of a supported pipeline, else a ValueError naming what is not supported."""
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"unsupported model {type(pipeline).__name__}: expected a sklearn Pipeline")
    steps = [estimator for _, estimator in pipeline.steps]
    if len(steps) != 2 or type(steps[0]) is not StandardScaler or type(steps[1]) is not SVC:
        shape = ", ".join(type(estimator).__name__ for estimator in steps)
        raise ValueError(f"unsupported pipeline steps [{shape}]: expected exactly [StandardScaler, SVC]")
    scaler, svc = steps
    problems = []
    if svc.kernel != "linear":
        problems.append(f"kernel={svc.kernel!r} (only 'linear' has primal weights)")
    if svc.decision_function_shape != "ovr":
        problems.append(f"decision_function_shape={svc.decision_function_shape!r} (only 'ovr')")
    if svc.break_ties:
        problems.append("break_ties=True (only libsvm's vote)")
    if problems:
        raise ValueError("unsupported SVC: " + "; ".join(problems))
    try:
        check_is_fitted(pipeline)
    except NotFittedError as exc:
        raise ValueError("unsupported pipeline: it is not fitted") from exc
    if sparse.issparse(svc.support_vectors_):
        raise ValueError("unsupported SVC: fitted on sparse input")
    return scaler, svc


def _pair_matrix(n_classes: int) -> Float64Array:
    """+1/-1 incidence of the one-vs-one pairs in libsvm's (and coef_'s) order (0,1), (0,2), ..., (1,2), ..."""
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    matrix = np.zeros((len(pairs), n_classes))
    for row, (i, j) in enumerate(pairs):
        matrix[row, i], matrix[row, j] = 1.0, -1.0
    return matrix


def _pair_abs_weights(svc: SVC) -> Float64Array:
    """C[p, f]: the sum over pair p's support vectors k of |alpha_k sv_k[f]| (libsvm's layout, as in coef_)."""
    alpha, vectors = np.abs(svc.dual_coef_), np.abs(svc.support_vectors_)
    bounds = np.concatenate([[0], np.cumsum(svc.n_support_)])
    rows = []
    n_classes = len(svc.classes_)
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            # The SVs of class i carry their coefficient against j in dual_coef_ row j-1, those of j in row i.
            own_i, own_j = slice(bounds[i], bounds[i + 1]), slice(bounds[j], bounds[j + 1])
            rows.append(alpha[j - 1, own_i] @ vectors[own_i] + alpha[i, own_j] @ vectors[own_j])
    return np.asarray(rows)


def _error_model(svc: SVC) -> tuple[Float64Array, float, float, float]:
    """(error_weights, relative_error, underflow_error, max_safe_l1) of the certainty test in _decisions."""
    # Both computations start from the same float64 standardised row s (bit-identical, see _decisions). For a
    # pair with m_p support vectors, let D = sum_f s_f c_f + b be the exact value, with c = sum_k alpha_k sv_k
    # the exact primal weights and C_f = sum_k |alpha_k sv_k[f]| (error_weights). With g(n) = n u / (1 - n u):
    #  * libsvm: d products and sums per kernel value, one product by alpha_k, m_p terms summed with rho:
    #    |libsvm - D| <= g(d + m_p + 1) (sum_f |s_f| C_f + |b|);
    #  * here: coef_ = sum_k alpha_k sv_k is within g(m_p + 1) C of c, and the product with s plus b adds
    #    g(d + 1) (sum_f |s_f| |coef_f| + |b|).
    # Together: below (2m + 2d + 4) u (1 + 1e-9) (sum_f |s_f| C_f + |b|) for m >= m_p support vectors, far
    # fewer than 1e6. A value whose magnitude exceeds that has the same, non-zero, sign in both, so libsvm
    # casts the same vote. relative_error doubles the factor to cover the second-order terms and the rounding
    # of C and of error_weights @ |s|. These bounds hold in any summation order (BLAS blocking, FMA).
    # Underflow: each of the < 2 (m + 1)(d + 1) products may instead be off by one subnormal, amplified by at
    # most (1 + max |alpha|) (1 + |s|_1): underflow_error. Overflow would void all of this, so rows whose
    # partial sums could exceed half the float64 range (|s|_1 > max_safe_l1) are never trusted.
    n_sv, n_features = svc.support_vectors_.shape
    error_weights = np.vstack([_pair_abs_weights(svc), np.ones(n_features)])
    max_alpha = float(np.abs(svc.dual_coef_).max())
    largest_partial_sum_per_l1 = 2.0 * (n_sv + 1) * (n_features + 1) * (1 + max_alpha) * (
        1 + float(np.abs(svc.support_vectors_).max()))
    return (
        error_weights,
        2 * (2 * n_sv + 2 * n_features + 4) * _UNIT_ROUNDOFF,
        2 * (n_sv + 1) * (n_features + 1) * (1 + max_alpha) * _SUBNORMAL,
        (_MAX_FLOAT / 2 - float(np.abs(svc.intercept_).max())) / largest_partial_sum_per_l1,
    )


def select_predictor(compiled: CompiledLinearSVC, probe: npt.ArrayLike) -> SVCPredictor:
    """`compiled` if it agrees with its pipeline on `probe`, else the pipeline itself (logging a warning)."""
    if compiled.verify(probe):
        return compiled
    logger.warning("compiled linear SVC disagrees with scikit-learn on the probe set: serving with scikit-learn")
    return SklearnPredictor(compiled.pipeline)


def exact_predictor(pipeline: Pipeline) -> SVCPredictor:
    """The compiled predictor of a linear SVC (exact by construction), scikit-learn itself for any other kernel."""
    if getattr(pipeline.steps[-1][1], "kernel", None) != "linear":
        return SklearnPredictor(pipeline)
    return CompiledLinearSVC.from_pipeline(pipeline)


def make_predictor(pipeline: Pipeline, probe: npt.ArrayLike) -> SVCPredictor:
    """The compiled predictor when it compiles and agrees with `pipeline` on `probe`, else scikit-learn (warning)."""
    try:
        compiled = CompiledLinearSVC.from_pipeline(pipeline)
    except ValueError as exc:
        logger.warning("cannot compile the model (%s): serving with scikit-learn", exc)
        return SklearnPredictor(pipeline)
    return select_predictor(compiled, probe)
