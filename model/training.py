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
from data.schema import CLASSES, FEATURES
from model.calibration import TemperatureScaling
from model.compiled_svc import CompiledLinearSVC
from model.evaluation import Metrics, holdout_metrics, out_of_fold, probability_metrics
from model.figures import Figures
from monitoring.reference import Reference, build_reference

MODEL_NAME = "drybean_svc"
# The tutorial's split, so that accuracies compare with its 0.923.
TEST_SIZE = 0.3
RANDOM_STATE = 17
DERMASON_EXAMPLE = [33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, 207.93,
                    0.82, 0.99, 0.93, 0.82, 0.01, 0.0, 0.67, 1.0]  # the tutorial's example bean


def build_pipeline() -> Pipeline:
    """A linear SVC on standardised features: same model family as the tutorial, fitted in a fraction of the time."""
    return Pipeline([("scaler", StandardScaler()), ("svc", SVC(kernel="linear"))])


@contextmanager
def step(name: str) -> Iterator[None]:
    """Print one progress line with the step's duration."""
    start = time.perf_counter()
    yield
    print(f"{name:<9} {time.perf_counter() - start:6.2f} s", flush=True)


def save_model(pipeline: Pipeline, dataset: Dataset, metrics: Metrics, reference: Reference,
               calibrator: TemperatureScaling) -> bentoml.Model:
    """Save to the model store with what a server and a person need to trust it without this script."""
    return bentoml.sklearn.save_model(
        MODEL_NAME,
        pipeline,
        signatures={"predict": {"batchable": False}, "decision_function": {"batchable": False}},
        labels={"dataset": "uci-dry-bean", "algorithm": "linear-svc", "stage": "candidate"},
        metadata={
            "features": list(FEATURES),
            "classes": list(CLASSES),
            "metrics": metrics.model_dump(),
            "calibration": calibrator.to_metadata(),  # the service's probabilities: calibration.py
            "reference": reference.model_dump(),  # the training data in summary, for drift
            "dataset": {"file": dataset.source.name, "sha256": dataset.sha256, "rows": dataset.rows,
                        "class_counts": {c: int((dataset.labels == c).sum()) for c in CLASSES},
                        "feature_ranges": {f: [float(dataset.features[f].min()), float(dataset.features[f].max())]
                                           for f in FEATURES}},  # the console's class mix and input hints
            "split": {"test_size": TEST_SIZE, "random_state": RANDOM_STATE},
            "params": {"kernel": "linear", "C": pipeline.named_steps["svc"].C, "scaler": "StandardScaler"},
            "sklearn_version": sklearn.__version__,
        },
    )


def train(args: argparse.Namespace, figures: Figures) -> int:
    """Load, fit, evaluate, gate and save (train.py's options in `args`); return the process exit code."""
    settings = get_settings()
    try:
        with step("load"):
            dataset = load_dataset(args.data or settings.data_path, settings.data_url)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    x = dataset.features.to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, dataset.labels.to_numpy(), test_size=TEST_SIZE,
                                                        random_state=RANDOM_STATE)
    pipeline = build_pipeline()
    with step("fit"):  # and the cross-validation's folds beside it
        folds = out_of_fold(pipeline, x_train, y_train, fit_pipeline=True)
    with step("evaluate"):
        calibrator = TemperatureScaling.fit(folds.scores, np.searchsorted(CLASSES, y_train))
        labels, scores = CompiledLinearSVC.from_pipeline(pipeline).predict_with_scores(x_test)  # exact labels
        metrics = holdout_metrics(y_test, labels, list(CLASSES), folds.accuracies,
                                  probability_metrics(calibrator, scores, labels, y_test, list(CLASSES)))
        (args.output / "metrics.json").write_text(metrics.model_dump_json(indent=2) + "\n")
        figures.draw(confusion_matrix=metrics.confusion_matrix, classes=metrics.classes,
                     accuracy=metrics.holdout_accuracy, macro_f1=metrics.macro_f1,
                     probabilities=calibrator.probabilities(scores), y_true=y_test)
    summary = (f"holdout accuracy {metrics.holdout_accuracy:.4f}, macro F1 {metrics.macro_f1:.4f}, "
               f"{metrics.cv_folds}-fold CV {metrics.cv_accuracy_mean:.4f} ± {metrics.cv_accuracy_std:.4f}")
    if metrics.holdout_accuracy < args.min_accuracy:
        print(f"refused: {summary} is below --min-accuracy {args.min_accuracy}; nothing saved", file=sys.stderr)
        return 1
    example = pipeline.predict(np.array([DERMASON_EXAMPLE]))[0]
    if example != "DERMASON":
        print(f"refused: the tutorial's example bean is classified {example}, not DERMASON; nothing saved",
              file=sys.stderr)
        return 1
    with step("save"):
        model = save_model(pipeline, dataset, metrics, build_reference(x_train, y_train, FEATURES, CLASSES),
                           calibrator)
    print(f"{summary}\nreports in {args.output}/\nsaved {model.tag}")
    return 0

