"""Scoring on Spark (batch/spark.py, score.py --spark) against the local path: the same rows, labels, probabilities
and doubts on the whole dataset, the same rejects and reasons, the model loaded once per Python worker, from the
model store or from an exported file; score.py --spark end to end."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from batch.files import open_source
from batch.scoring import LABEL, REASON, score_frame
from data.schema import FEATURES
from tests.support import require

pytestmark = pytest.mark.system

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from model.classifier import Classifier

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-12
# Small input splits: the dataset's CSV (1.9 MB) is read as 8 partitions, several for each Python worker.
SPLIT_BYTES = 256 * 1024
BAD_VALUES = {3: ("Area", "abc"), 40: ("Perimeter", ""), 777: ("Extent", "inf"), 1500: ("ShapeFactor1", "1e20"),
              1999: ("roundness", "NaN")}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """batch/spark.py's local session (local[2], no UI, 2 shuffle partitions), with small input splits."""
    require(shutil.which("java") is not None and importlib.util.find_spec("pyspark") is not None,
            "Java 17 and PySpark (pip install -e '.[dev]'; apt-get install openjdk-17-jre-headless)")
    from batch.spark import session

    spark = session()
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(SPLIT_BYTES))
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def classifier(trained_model_home: Path) -> Classifier:
    import bentoml

    from model.classifier import Classifier

    model = bentoml.models.get("drybean_svc:latest")
    return Classifier.from_metadata(bentoml.sklearn.load_model(model), str(model.tag), model.info.metadata)


@pytest.fixture(scope="module")
def bad_csv(shared_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 of the dataset's beans, five of them refused for five different reasons."""
    frame = pd.read_csv(shared_csv, nrows=2000, dtype=str)
    for row, (feature, value) in BAD_VALUES.items():
        frame.loc[row, feature] = value
    path = tmp_path_factory.mktemp("spark-input") / "beans.csv"
    frame.to_csv(path, index=False)
    return path


def local_path(classifier: Classifier, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """score.py's local path: the file read by batch/files.py, each chunk scored by score_frame."""
    parts = [score_frame(classifier, chunk) for chunk in open_source(path, 100_000).chunks]
    return (pd.concat([p[0] for p in parts], ignore_index=True),
            pd.concat([p[1] for p in parts], ignore_index=True))


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns in the same order, same rows in the same order: numbers within 1e-12, the rest equal."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        ours, theirs = got[column].reset_index(drop=True), expected[column].reset_index(drop=True)
        if column in FEATURES or column.startswith("probability_"):
            np.testing.assert_allclose(ours.to_numpy(np.float64), theirs.to_numpy(np.float64), rtol=0,
                                       atol=TOLERANCE, err_msg=column)
        else:
            assert ours.astype(str).tolist() == theirs.astype(str).tolist(), column


def test_spark_equals_the_local_path_on_the_whole_dataset(spark: SparkSession, classifier: Classifier,
                                                         shared_csv: Path) -> None:
    from batch.spark import ModelSource, read_table, score_dataframe

    frame = read_table(spark, str(shared_csv))
    assert frame.rdd.getNumPartitions() >= 6
    scored, rejects = score_dataframe(frame, ModelSource(home=os.environ["BENTOML_HOME"]), 0.95)
    expected, expected_rejects = local_path(classifier, shared_csv)
    got = scored.toPandas()
    assert len(got) == 13_611
    assert {"prediction_set", "needs_review", "consistent", "in_distribution"} <= set(got.columns)
    assert_same_rows(got, expected)
    assert rejects.count() == len(expected_rejects) == 0


def test_rejects_equal_the_local_path(spark: SparkSession, classifier: Classifier, bad_csv: Path) -> None:
    from batch.spark import ModelSource, read_table, score_dataframe

    frame = read_table(spark, str(bad_csv))
    assert frame.rdd.getNumPartitions() > 1  # the rows' numbers run across partitions
    scored, rejects = score_dataframe(frame, ModelSource(), 0.95)
    expected, expected_rejects = local_path(classifier, bad_csv)
    assert_same_rows(scored.toPandas(), expected)
    got_rejects = rejects.toPandas()
    assert got_rejects[REASON].tolist() == expected_rejects[REASON].tolist()
    assert [reason.split(",")[0] for reason in got_rejects[REASON]] == [f"row {row + 1}" for row in BAD_VALUES]
    for feature in FEATURES:  # as read: text where a column held text, in either reader
        pd.testing.assert_series_equal(pd.to_numeric(got_rejects[feature], errors="coerce"),
                                       pd.to_numeric(expected_rejects[feature], errors="coerce"),
                                       check_dtype=False, check_names=False)


def test_the_model_is_loaded_once_per_python_worker(spark: SparkSession, shared_csv: Path,
                                                    trained_model_home: Path) -> None:
    """Each partition reports its worker and that worker's load count after scoring through score_batches (the
    function score_dataframe hands to mapInPandas): one load per worker, whatever the partitions it scored."""
    from batch import spark as on_spark

    source = on_spark.ModelSource()

    def report(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rows = sum(len(scored) for scored in on_spark.score_batches(batches, source=source, coverage=0.95))
        yield pd.DataFrame({"pid": [os.getpid()], "loads": [on_spark.load_count(source)], "rows": [rows]})

    frame = on_spark.read_table(spark, str(shared_csv))
    reports = frame.mapInPandas(report, "pid long, loads long, rows long").toPandas()
    assert reports["rows"].sum() == 13_611
    assert (reports["loads"] == 1).all(), reports
    assert len(reports) > reports["pid"].nunique()  # workers were reused across partitions


def test_an_exported_model_file_scores_the_same(spark: SparkSession, bad_csv: Path,
                                                tmp_path: Path, trained_model_home: Path) -> None:
    """`bentoml models export` writes the file; Spark ships it to the executors, which import it."""
    import bentoml

    from batch.spark import ModelSource, read_table, score_dataframe

    exported = tmp_path / "drybean_svc.bentomodel"
    bentoml.models.export_model("drybean_svc:latest", str(exported))
    frame = read_table(spark, str(bad_csv))
    from_file, _ = score_dataframe(frame, ModelSource.parse(str(exported)), 0.95)
    from_store, _ = score_dataframe(frame, ModelSource(), 0.95)
    assert_same_rows(from_file.toPandas(), from_store.toPandas())


def test_paths_an_unknown_model_and_a_wrong_header(spark: SparkSession, bad_csv: Path,
                                                                  trained_model_home: Path) -> None:
    from api.errors import MISSING_INPUTS
    from batch.spark import ModelSource, ModelUnavailable, read_table, score_dataframe, uri

    assert uri(Path("gs://bucket/beans.csv")) == "gs://bucket/beans.csv"  # as argparse's Path leaves it
    assert uri(bad_csv) == str(bad_csv)

    frame = read_table(spark, str(bad_csv))
    with pytest.raises(ModelUnavailable, match="no model 'drybean_svc:nope' in the model store"):
        score_dataframe(frame, ModelSource(tag="drybean_svc:nope"), 0.95)
    with pytest.raises(ModelUnavailable, match="bentoml models export"):
        score_dataframe(frame, ModelSource.parse("/nowhere/drybean_svc.bentomodel"), 0.95)
    with pytest.raises(ValueError) as wrong_header:
        score_dataframe(frame.drop("Area"), ModelSource(), 0.95)
    assert str(wrong_header.value) == MISSING_INPUTS.format(names="'Area'")


def test_score_py_spark_end_to_end(spark: SparkSession, classifier: Classifier, bad_csv: Path,
                                   tmp_path: Path) -> None:
    """`python score.py INPUT --output OUT.parquet --spark`: a directory of part files, the rejects beside it, exit
    code 1 for the refused rows, and the summary line."""
    output = tmp_path / "scored.parquet"
    result = subprocess.run([sys.executable, "score.py", str(bad_csv), "--output", str(output), "--spark"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    expected, expected_rejects = local_path(classifier, bad_csv)
    assert output.is_dir() and list(output.glob("part-*.parquet"))
    written = pd.read_parquet(output)
    assert written[LABEL].tolist() == expected[LABEL].tolist()
    rejects = pd.read_parquet(tmp_path / "scored.rejects.parquet")
    assert rejects[REASON].tolist() == expected_rejects[REASON].tolist()
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"{len(expected) + len(expected_rejects):,} rows in "), summary
    assert f"{len(expected_rejects)} rows refused" in summary and "directories of part files" in summary
