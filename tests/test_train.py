"""Training on the real data into an isolated model store: accuracy, reports, metadata and the quality gate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

import train
from data.readers import DatasetError, read_dataset
from data.schema import CLASSES, EXAMPLE_ROW, FEATURES
from model.figures import FiguresFailed, drawing_figures


def test_train_prints_timed_steps_and_a_summary(trained_model: subprocess.CompletedProcess[str]) -> None:
    out = trained_model.stdout
    for name in ("load", "fit", "evaluate", "save"):
        assert re.search(rf"^{name}\s+\d+\.\d\d s$", out, re.MULTILINE), out
    accuracy = float(re.search(r"holdout accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= 0.933
    assert re.search(r"^saved drybean_svc:\w+$", out, re.MULTILINE)


def test_reports_are_written(trained_model: subprocess.CompletedProcess[str]) -> None:
    output = Path(trained_model.args)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["holdout_accuracy"] >= 0.933
    assert 0.9 < metrics["cv_accuracy_mean"] < 1 and 0 < metrics["cv_accuracy_std"] < 0.05
    assert metrics["cv_folds"] == 5
    assert set(metrics["per_class"]) == set(CLASSES)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (7, 7) and matrix.sum() == 4084  # 30% of 13,611
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["holdout_accuracy"])
    assert (output / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    probabilities = metrics["probabilities"]
    assert 0 < probabilities["log_loss"] < probabilities["uncalibrated_log_loss"] < 1
    assert 0 < probabilities["brier_score"] < 0.2 and 0.1 < probabilities["temperature"] < 1
    assert probabilities["label_not_most_probable"] <= probabilities["vote_ties"] < 20
    assert (output / "reliability.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert metrics["training_beans"] == 9527 and metrics["holdout_beans"] == 4084
    assert metrics["feedback"] is None  # without --feedback
    assert metrics["champion"]["candidate_accuracy"] == metrics["holdout_accuracy"]
    assert metrics["champion"]["holdout_beans"] == 4084


def test_model_store_entry_carries_what_a_server_needs(trained_model: subprocess.CompletedProcess[str]) -> None:
    model = bentoml.models.get("drybean_svc:latest")
    meta = model.info.metadata
    assert meta["features"] == list(FEATURES)
    assert meta["classes"] == list(CLASSES)
    assert meta["metrics"]["holdout_accuracy"] >= 0.933
    assert meta["dataset"]["rows"] == 13_611 and len(meta["dataset"]["sha256"]) == 64
    assert meta["split"] == {"test_size": 0.3, "random_state": 17}
    assert meta["params"] == {"kernel": "linear", "C": 1.0, "scaler": "StandardScaler"} and meta["sklearn_version"]
    assert meta["calibration"]["temperature"] == meta["metrics"]["probabilities"]["temperature"]
    assert model.info.labels["algorithm"] == "linear-svc"
    pipeline = bentoml.sklearn.load_model(model)
    assert pipeline.predict(np.array([EXAMPLE_ROW]))[0] == "DERMASON"


def test_the_defaults_are_the_linear_svc_with_c_1_and_no_feedback() -> None:
    args = train.parse_args([])
    assert (args.kernel, args.C, args.feedback, args.require_better) == ("linear", 1.0, False, False)


@pytest.mark.system
def test_models_get_shows_the_metadata(trained_model: subprocess.CompletedProcess[str]) -> None:
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    shown = subprocess.run([bentoml_cli, "models", "get", "drybean_svc:latest"], capture_output=True, text=True,
                           check=True).stdout
    assert "holdout_accuracy" in shown and "sha256" in shown and "ShapeFactor4" in shown


@pytest.mark.system
def test_gate_refuses_a_model_below_min_accuracy(shared_csv: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = {m.tag for m in bentoml.models.list("drybean_svc")}
    assert train.main(["--data", str(shared_csv), "--output", str(tmp_path), "--min-accuracy", "0.99"]) == 1
    assert "below --min-accuracy 0.99; nothing saved" in capsys.readouterr().err
    assert {m.tag for m in bentoml.models.list("drybean_svc")} == before


@pytest.mark.system
def test_a_bad_dataset_stops_training_with_its_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.csv"
    assert train.main(["--data", str(missing), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: cannot be read (No such file or directory)"


@pytest.mark.system
def test_the_figures_process_draws_nothing_unless_asked(tmp_path: Path) -> None:
    with drawing_figures(tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.system
def test_a_failed_drawing_fails_training(tmp_path: Path) -> None:
    classes = ["A", "B"]
    with pytest.raises(FiguresFailed, match="exit code 1"), drawing_figures(tmp_path / "missing") as figures:
        figures.draw(confusion_matrix=[[3, 1], [0, 4]], classes=classes, accuracy=0.875, macro_f1=0.87,
                     probabilities=np.array([[0.9, 0.1], [0.2, 0.8]]), y_true=np.array(classes))


@pytest.mark.system
def test_a_labs_features_at_a_known_scale_train_a_model_that_records_it(shared_csv: Path, tmp_path: Path) -> None:
    """`python -m photos extract` writes each bean's photo and the scale beside the dataset's columns: train.py takes
    the file and saves the scale in the model's metadata, where POST /v1/photos reads it."""
    lab = pd.read_csv(shared_csv, dtype=str).assign(photo="tray.png", pixels_per_mm="10.5")
    lab.to_csv(tmp_path / "lab.csv", index=False)
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home")}  # not the session's store
    trained = subprocess.run([sys.executable, "train.py", "--data", str(tmp_path / "lab.csv"), "--output",
                              str(tmp_path / "out")], cwd=Path(train.__file__).parent, env=env, capture_output=True,
                             text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    shown = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "models", "get", "drybean_svc:latest",
                            "-o", "json"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(shown.stdout)["metadata"]["pixels_per_mm"] == 10.5


def test_rows_at_two_scales_are_refused_with_what_to_do(shared_csv: Path, tmp_path: Path) -> None:
    lab = pd.read_csv(shared_csv, dtype=str).head(50).assign(photo="tray.png", pixels_per_mm="10.5")
    lab.loc[10, "pixels_per_mm"] = "12"
    lab.to_csv(tmp_path / "lab.csv", index=False)
    refused = re.escape("one positive scale for every row, found 10.5, 12: extract the photos")
    with pytest.raises(DatasetError, match=refused):
        read_dataset(tmp_path / "lab.csv")
