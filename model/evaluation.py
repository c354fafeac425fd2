"""Model evaluation: holdout metrics, out-of-fold cross-validation and the quality of calibrated probabilities.

Its figures are drawn by `model/figures.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from joblib import Parallel, delayed
from pydantic import BaseModel, Field
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from model.calibration import TemperatureScaling, brier_score, log_loss, vote_ties
from model.compiled_svc import exact_predictor
from trust.conformal import ConformalSets
from trust.ood import OutOfDistribution

REPORTED_COVERAGES = (0.9, 0.95, 0.99)  # the prediction sets' coverages metrics.json reports


class ClassScores(BaseModel):
    """Holdout precision, recall and F1 of one variety."""

    precision: float
    recall: float
    f1: float
    support: int


class ProbabilityMetrics(BaseModel):
    """How trustworthy the calibrated probabilities are, on the holdout set (lower is better for both scores)."""

    method: str
    temperature: float = Field(description="T in softmax(scores / T), fitted on out-of-fold training scores")
    log_loss: float = Field(description="mean -ln p(true variety)")
    brier_score: float = Field(description="mean squared distance to the one-hot truth, summed over varieties")
    uncalibrated_log_loss: float = Field(description="the same with T = 1, for comparison")
    vote_ties: int = Field(description="holdout beans on which several varieties tie on pairwise votes")
    label_not_most_probable: int = Field(description="holdout beans whose label is not their most probable "
                                                     "variety (possible only on vote ties)")


class SetCoverage(BaseModel):
    """Conformal prediction sets at one requested coverage, on the holdout set."""

    coverage: float = Field(description="share of holdout beans whose true variety is in their prediction set")
    mean_set_size: float = Field(description="varieties per set, on average (an empty set counts 0)")
    threshold: float = Field(description="the calibrated probability a variety needs to be in a set")


class OutOfDistributionShare(BaseModel):
    """Holdout beans beyond the out-of-distribution threshold (trust/ood.py)."""

    threshold: float = Field(description="the 99.9th percentile of the training beans' distances to their "
                                         "predicted variety")
    holdout_beans: int = Field(description="holdout beans beyond it, scored against their predicted variety")
    holdout_share: float


class FeedbackBeans(BaseModel):
    """Production beans with reported true varieties (`train.py --feedback`), added to the training part only."""

    added: int = Field(description="beans added to the training part")
    left_out_in_holdout: int = Field(description="beans identical to a holdout bean, left out so that the holdout "
                                                 "stays unseen")


class ChampionComparison(BaseModel):
    """The candidate against the current champion, both evaluated on the same holdout beans."""

    champion: str | None = Field(description="the champion's tag: the newest model of this name in the store "
                                             "before training; null when there was none")
    champion_accuracy: float | None = Field(description="its accuracy on this holdout; null when it has none, or "
                                                        "could not be evaluated (see `problem`)")
    candidate_accuracy: float
    holdout_beans: int
    better: bool | None = Field(description="whether the candidate is strictly more accurate; null without a "
                                            "champion's accuracy")
    problem: str | None = Field(None, description="why the champion could not be evaluated")


class Metrics(BaseModel):
    """Everything `train.py` measures about a model."""

    holdout_accuracy: float
    macro_f1: float
    cv_accuracy_mean: float
    cv_accuracy_std: float
    cv_folds: int
    classes: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted, in `classes` order
    probabilities: ProbabilityMetrics | None = None
    conformal: dict[str, SetCoverage] | None = None  # by requested coverage: "0.9", "0.95", "0.99"
    out_of_distribution: OutOfDistributionShare | None = None
    training_beans: int | None = None  # what the model was fitted on: the split's training part, plus feedback
    holdout_beans: int | None = None
    feedback: FeedbackBeans | None = None  # with `train.py --feedback` only
    champion: ChampionComparison | None = None


@dataclass(frozen=True)
class OutOfFold:
    """What the cross-validation folds give: each fold's accuracy and every training bean's held-out scores."""

    accuracies: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]  # rows of the training part, in its order; each from the fold that held it out


def holdout_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: list[str],
                    cv_scores: npt.NDArray[np.float64], probabilities: ProbabilityMetrics | None = None) -> Metrics:
    """Metrics of predictions on the holdout set, with the cross-validation scores alongside."""
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                                     zero_division=0)
    return Metrics(
        holdout_accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=classes, average="macro")),
        cv_accuracy_mean=float(cv_scores.mean()),
        cv_accuracy_std=float(cv_scores.std()),
        cv_folds=len(cv_scores),
        classes=classes,
        per_class={c: ClassScores(precision=p, recall=r, f1=f, support=s)
                   for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)},
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        probabilities=probabilities,
    )


def out_of_fold(pipeline: Pipeline, x: npt.NDArray[np.float64], y: npt.NDArray[Any], folds: int = 5, *,
                fit_pipeline: bool = False) -> OutOfFold:
    """Fit an unfitted copy of `pipeline` per stratified fold (deterministic: no shuffling), all folds in parallel;
    with `fit_pipeline`, fit `pipeline` itself on all of `x` in the same pool (one fit fewer to wait for).

    One fit per fold gives both the fold's accuracy and the held-out decision scores the calibrator learns from.
    """
    splits = list(StratifiedKFold(folds).split(x, y))
    jobs = [delayed(_fold)(clone(pipeline), x[train], y[train], x[held_out], y[held_out]) for train, held_out in splits]
    if fit_pipeline:
        jobs.insert(0, delayed(pipeline.fit)(x, y))  # first: the longest fit
    fitted = Parallel(n_jobs=-1, prefer="threads")(jobs)[1 if fit_pipeline else 0:]
    scores = np.empty((len(x), len(np.unique(y))))
    for (_, held_out), (_, fold_scores) in zip(splits, fitted, strict=True):
        scores[held_out] = fold_scores
    return OutOfFold(accuracies=np.array([accuracy for accuracy, _ in fitted]), scores=scores)


def _fold(pipeline: Pipeline, x_train: npt.NDArray[np.float64], y_train: npt.NDArray[Any],
          x_held_out: npt.NDArray[np.float64], y_held_out: npt.NDArray[Any]) -> tuple[float, npt.NDArray[np.float64]]:
    pipeline.fit(x_train, y_train)
    # A linear SVC compiled: scikit-learn's labels exactly and its scores to ~1e-12, in one matrix product.
    labels, scores = exact_predictor(pipeline).predict_with_scores(x_held_out)
    return float(accuracy_score(y_held_out, labels)), scores


def probability_metrics(calibrator: TemperatureScaling, scores: npt.NDArray[np.float64], labels: npt.NDArray[Any],
                        y_true: npt.NDArray[Any], classes: list[str]) -> ProbabilityMetrics:
    """Log-loss and Brier score of the calibrated probabilities of holdout `scores`, and the vote-tie counts."""
    y_index = np.searchsorted(classes, y_true)
    probabilities = calibrator.probabilities(scores)
    most_probable = np.asarray(classes)[probabilities.argmax(axis=1)]
    return ProbabilityMetrics(
        method=calibrator.to_metadata()["method"],
        temperature=calibrator.temperature,
        log_loss=log_loss(probabilities, y_index),
        brier_score=brier_score(probabilities, y_index),
        uncalibrated_log_loss=log_loss(TemperatureScaling(1.0).probabilities(scores), y_index),
        vote_ties=int(vote_ties(scores).sum()),
        label_not_most_probable=int((most_probable != labels).sum()),
    )


def set_coverages(conformal: ConformalSets, probabilities: npt.NDArray[np.float64],
                  y_index: npt.NDArray[np.intp]) -> dict[str, SetCoverage]:
    """Coverage and mean size of the prediction sets of holdout `probabilities` at each reported coverage."""
    coverages = {}
    for requested in REPORTED_COVERAGES:
        sets = conformal.sets(probabilities, requested)
        coverages[str(requested)] = SetCoverage(coverage=float(sets[np.arange(len(sets)), y_index].mean()),
                                                mean_set_size=float(sets.sum(axis=1).mean()),
                                                threshold=conformal.threshold(requested))
    return coverages


def out_of_distribution_share(ood: OutOfDistribution, x: npt.NDArray[np.float64],
                              predicted_index: npt.NDArray[np.intp]) -> OutOfDistributionShare:
    """How many holdout beans `x` lie beyond the threshold, from their predicted varieties."""
    beyond = int((ood.score(x, predicted_index) > ood.threshold).sum())
    return OutOfDistributionShare(threshold=ood.threshold, holdout_beans=beyond, holdout_share=beyond / len(x))
