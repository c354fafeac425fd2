"""Training: load the dataset, fit and cross-validate the pipeline, evaluate, gate, and save to the model store.

`train.py` is its command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import bentoml
import numpy as np
import sklearn
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from config import get_settings
from data.acquire import load_dataset
from data.readers import Dataset, DatasetError
from data.schema import CLASSES, EXAMPLE_ROW, FEATURES
from model import MODEL_NAME
from model.calibration import TemperatureScaling
from model.champion import compare, current_champion, describe
from model.compiled_svc import exact_predictor
from model.evaluation import (
    FeedbackBeans,
    Metrics,
    holdout_metrics,
    out_of_distribution_share,
    out_of_fold,
    probability_metrics,
    set_coverages,
)
from model.figures import Figures
from monitoring.estimate import PrecisionTable
from monitoring.reference import Reference, build_reference
from trust.conformal import ConformalSets
from trust.ood import OutOfDistribution

# The tutorial's split, so that accuracies compare with its 0.923.
TEST_SIZE = 0.3
RANDOM_STATE = 17


def build_pipeline(kernel: str = "linear", C: float = 1.0) -> Pipeline:  # C: scikit-learn's name
    """An SVC on standardised features: linear (the tutorial's family, fitted in a fraction of its time; compiled
    and explained when served) or RBF (scikit-learn's default gamma, "scale"; served by scikit-learn)."""
    return Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel=kernel, C=C))])


@contextmanager
def step(name: str) -> Iterator[None]:
    """Print one progress line with the step's duration."""
    start = time.perf_counter()
    yield
    print(f"{name:<9} {time.perf_counter() - start:6.2f} s", flush=True)


def save_model(pipeline: Pipeline, dataset: Dataset, metrics: Metrics, reference: Reference,
               calibrator: TemperatureScaling, ood: OutOfDistribution, conformal: ConformalSets,
               precision: PrecisionTable) -> bentoml.Model:
    """Save to the model store with what a server and a person need to trust it without this script."""
    svc = pipeline.named_steps["svc"]
    params = {"kernel": svc.kernel, "C": svc.C, "scaler": "StandardScaler"}
    if svc.kernel != "linear":
        params["gamma"] = svc.gamma
    return bentoml.sklearn.save_model(
        MODEL_NAME,
        pipeline,
        signatures={"predict": {"batchable": False}, "decision_function": {"batchable": False}},
        labels={"dataset": "uci-dry-bean", "algorithm": f"{svc.kernel}-svc", "stage": "candidate"},
        metadata={
            "features": list(FEATURES),
            "classes": list(CLASSES),
            "metrics": metrics.model_dump(exclude_none=True),  # BentoML metadata holds no None
            "calibration": calibrator.to_metadata(),  # the service's probabilities: calibration.py
            "trust": {"ood": ood.to_metadata(), "conformal": conformal.to_metadata(),  # which answers to doubt
                      "estimate": precision.to_metadata()},  # accuracy without labels
            "reference": reference.model_dump(),  # the training data in summary, for drift
            "dataset": {"file": dataset.source.name, "sha256": dataset.sha256, "rows": dataset.rows,
                        "class_counts": {c: int((dataset.labels == c).sum()) for c in CLASSES},
                        "feature_ranges": {f: [float(dataset.features[f].min()), float(dataset.features[f].max())]
                                           for f in FEATURES}},  # the console's class mix and input hints
            "split": {"test_size": TEST_SIZE, "random_state": RANDOM_STATE},
            "params": params,
            "sklearn_version": sklearn.__version__,
            # The features' scale, for photos (POST /v1/photos converts to it); unknown for the UCI dataset's.
            **({"pixels_per_mm": dataset.pixels_per_mm} if dataset.pixels_per_mm is not None else {}),
        },
    )


def train(args: argparse.Namespace, figures: Figures) -> int:
    """Load, fit, evaluate, gate and save (train.py's options in `args`); return the process exit code."""
    settings = get_settings()
    champion = current_champion(MODEL_NAME)  # before this run saves anything
    try:
        with step("load"):
            dataset = load_dataset(args.data or settings.data_path, settings.data_url)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    x = dataset.features.to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, dataset.labels.to_numpy(), test_size=TEST_SIZE,
                                                        random_state=RANDOM_STATE)
    feedback = None
    if args.feedback:
        from model.feedback_beans import FeedbackUnavailable, read_feedback_beans  # SQLAlchemy: only when asked

        try:
            with step("feedback"):
                reported = read_feedback_beans(settings)
        except FeedbackUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        added = reported.outside(x_test)  # to the training part only: the holdout stays the tutorial's split
        x_train, y_train = np.vstack([x_train, added.features]), np.concatenate([y_train, added.labels])
        feedback = FeedbackBeans(added=len(added), left_out_in_holdout=len(reported) - len(added))
        print(f"feedback: {len(added)} beans with a reported variety added to the training part"
              + (f" ({feedback.left_out_in_holdout} identical to holdout beans left out)"
                 if feedback.left_out_in_holdout else ""), flush=True)
    pipeline = build_pipeline(args.kernel, args.C)
    with step("fit"):  # and the cross-validation's folds beside it
        folds = out_of_fold(pipeline, x_train, y_train, fit_pipeline=True)
    y_index = np.searchsorted(CLASSES, y_train)
    with step("evaluate"):
        calibrator = TemperatureScaling.fit(folds.scores, y_index)
        labels, scores = exact_predictor(pipeline).predict_with_scores(x_test)  # exact labels
        metrics = holdout_metrics(y_test, labels, list(CLASSES), folds.accuracies,
                                  probability_metrics(calibrator, scores, labels, y_test, list(CLASSES)))
        probabilities = calibrator.probabilities(scores)
        figures.draw(confusion_matrix=metrics.confusion_matrix, classes=metrics.classes,
                     accuracy=metrics.holdout_accuracy, macro_f1=metrics.macro_f1,
                     probabilities=probabilities, y_true=y_test)
    with step("trust"):  # fitted on out-of-fold probabilities: beans the scoring model never saw, as when served
        out_of_fold_probabilities = calibrator.probabilities(folds.scores)
        conformal = ConformalSets.fit(out_of_fold_probabilities, y_index)
        ood = OutOfDistribution.fit(x_train, y_index, out_of_fold_probabilities.argmax(axis=1))
        precision = PrecisionTable.fit(out_of_fold_probabilities, y_index)
        metrics = metrics.model_copy(update={
            "conformal": set_coverages(conformal, probabilities, np.searchsorted(CLASSES, y_test)),
            "out_of_distribution": out_of_distribution_share(ood, x_test, np.searchsorted(CLASSES, labels))})
    with step("champion"):
        comparison = compare(champion, metrics.holdout_accuracy, x_test, y_test)
    metrics = metrics.model_copy(update={"training_beans": len(y_train), "holdout_beans": len(y_test),
                                         "feedback": feedback, "champion": comparison})
    (args.output / "metrics.json").write_text(metrics.model_dump_json(indent=2) + "\n")
    summary = (f"holdout accuracy {metrics.holdout_accuracy:.4f}, macro F1 {metrics.macro_f1:.4f}, "
               f"{metrics.cv_folds}-fold CV {metrics.cv_accuracy_mean:.4f} ± {metrics.cv_accuracy_std:.4f}")
    print(describe(comparison, MODEL_NAME), flush=True)
    if metrics.holdout_accuracy < args.min_accuracy:
        print(f"refused: {summary} is below --min-accuracy {args.min_accuracy}; nothing saved", file=sys.stderr)
        return 1
    if args.require_better and comparison.champion is not None and not comparison.better:
        print(f"refused: {describe(comparison, MODEL_NAME)}: not better than the champion (--require-better); "
              "nothing saved", file=sys.stderr)
        return 1
    example = pipeline.predict(np.array([EXAMPLE_ROW]))[0]
    if example != "DERMASON":
        print(f"refused: the tutorial's example bean is classified {example}, not DERMASON; nothing saved",
              file=sys.stderr)
        return 1
    with step("save"):
        model = save_model(pipeline, dataset, metrics, build_reference(x_train, y_train, FEATURES, CLASSES),
                           calibrator, ood, conformal, precision)
    print(f"{summary}\nreports in {args.output}/\nsaved {model.tag}")
    return 0
