"""Monitoring without a server: reference, PSI and drift on the real dataset, quality figures against
scikit-learn, the feedback store on MariaDB, and the Prometheus files checked by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sqlalchemy import text

from data.schema import CLASSES, FEATURES
from db import feedback, migrate
from db.feedback import FeedbackRecord
from db.store import PredictionRecord, insert_predictions
from monitoring.drift import drift_report as report_drift
from monitoring.drift import psi
from monitoring.quality import quality_report
from monitoring.reference import Reference, build_reference
from tests.servers import ROOT, MySQLDatabase
from tests.support import require

MONITORING = ROOT / "deploy" / "monitoring"
THRESHOLD = 0.2


@pytest.fixture(scope="module")
def reference(split: tuple[np.ndarray, ...]) -> Reference:
    x_train, _, y_train, _ = split
    return build_reference(x_train, y_train, FEATURES, CLASSES)


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi([0.25] * 4, [0.25] * 4) == 0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * np.log(0.9 / 0.5) + 0.4 * np.log(0.5 / 0.1))
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin is floored, not infinite


def test_the_reference_summarises_the_training_part(reference: Reference, split: tuple[np.ndarray, ...]) -> None:
    x_train, _, y_train, _ = split
    assert reference.rows == len(y_train) and list(reference.features) == list(FEATURES)
    for index, name in enumerate(FEATURES):
        feature = reference.features[name]
        assert len(feature.shares) == len(feature.edges) + 1 and sum(feature.shares) == pytest.approx(1)
        assert max(feature.shares) < 0.11  # deciles
        assert (feature.min, feature.max) == (x_train[:, index].min(), x_train[:, index].max())
    assert reference.class_priors == {name: pytest.approx(np.mean(y_train == name)) for name in CLASSES}
    assert Reference.model_validate(json.loads(reference.model_dump_json())) == reference  # survives the metadata


def test_drift_flags_the_shifted_feature_and_only_it(reference: Reference, split: tuple[np.ndarray, ...]) -> None:
    _, x_test, _, y_test = split
    steady = report_drift(reference, FEATURES, x_test, list(y_test), model="m", window=len(y_test),
                          threshold=THRESHOLD)
    assert steady.drifted == [] and steady.beans == len(y_test)
    assert max(f.psi for f in steady.features.values() if f.psi is not None) < 0.05
    assert steady.class_mix.psi is not None and steady.class_mix.psi < 0.05
    shifted = x_test.copy()
    shifted[:, FEATURES.index("Area")] *= 1.5
    drifted = report_drift(reference, FEATURES, shifted, list(y_test), model="m", window=len(y_test),
                           threshold=THRESHOLD)
    assert drifted.drifted == ["Area"]
    # A held-out bean is now and then outside the training range; Area x 1.5 sends ~2% of them above its maximum.
    assert steady.outside_training_range < 0.005 < drifted.features["Area"].outside_training_range
    assert drifted.outside_training_range >= drifted.features["Area"].outside_training_range


def test_drift_of_no_beans_is_null(reference: Reference) -> None:
    empty = report_drift(reference, FEATURES, np.empty((0, len(FEATURES))), [], model="m", window=10,
                         threshold=THRESHOLD)
    assert empty.beans == 0 and empty.drifted == [] and empty.outside_training_range is None
    assert empty.class_mix.psi is None and all(f.psi is None for f in empty.features.values())


def test_quality_figures_equal_scikit_learns_and_are_null_below_the_minimum(split: tuple[np.ndarray, ...]) -> None:
    _, _, _, y_true = split
    # Predictions wrong on every seventh bean: the next variety.
    y_pred = np.array([CLASSES[(CLASSES.index(y) + 1) % 7] if i % 7 == 0 else y for i, y in enumerate(y_true)])
    counts_by_pair = Counter(zip(y_true.tolist(), y_pred.tolist(), strict=True))
    training = {"holdout_accuracy": 0.93, "per_class": {"SIRA": {"precision": 0.9, "recall": 0.8, "f1": 0.85}}}
    report = quality_report(counts_by_pair, CLASSES, model="m", since=None, min_count=30, training=training)
    assert report.accuracy.live == pytest.approx(np.mean(y_true == y_pred)) and report.accuracy.count == len(y_true)
    assert report.accuracy.training == 0.93 and report.per_class["SIRA"].recall.training == 0.8
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=list(CLASSES))
    for i, name in enumerate(CLASSES):
        figures = report.per_class[name]
        assert (figures.precision.live, figures.recall.live, figures.f1.live) == pytest.approx(
            (precision[i], recall[i], f1[i]))
        assert figures.recall.count == support[i]
    assert report.confusion_matrix.live == confusion_matrix(y_true, y_pred, labels=list(CLASSES)).tolist()

    few = quality_report({("SIRA", "SIRA"): 20, ("SIRA", "CALI"): 9, ("CALI", "CALI"): 40}, CLASSES, model="m",
                         since=None, min_count=30, training=None)
    assert few.accuracy.live == pytest.approx(60 / 69) and few.accuracy.training is None
    assert few.per_class["SIRA"].recall.live is None and few.per_class["SIRA"].recall.count == 29
    assert few.per_class["CALI"].precision.live == pytest.approx(40 / 49)
    assert few.per_class["CALI"].recall.live == 1.0 and few.per_class["CALI"].f1.live is not None
    assert few.per_class["SIRA"].f1.live is None and few.per_class["BOMBAY"].precision.count == 0


@pytest.fixture()
def migrated(mysql_db: MySQLDatabase):
    engine = mysql_db.engine()
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM feedback"))
        connection.execute(text("DELETE FROM drybeans"))
        insert_predictions(connection, [PredictionRecord("a" * 32, i, "SIRA", "m:1", datetime(2026, 1, 1, 0, i),
                                                         (1.0,) * 16) for i in range(4)])
        ids = list(connection.scalars(text("SELECT id FROM drybeans ORDER BY bean_index")))
    yield engine, ids
    engine.dispose()


def _stored(engine) -> dict[int, str]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT record_id, variety FROM feedback")).all())


@pytest.mark.database
def test_a_report_is_stored_once_in_either_name(migrated) -> None:
    engine, ids = migrated
    when = datetime(2026, 1, 2)
    report = [FeedbackRecord("SIRA", when, record_id=ids[0]),
              FeedbackRecord("SIRA", when, request_id="a" * 32, bean_index=0),  # the same bean, named by its key
              FeedbackRecord("CALI", when, request_id="a" * 32, bean_index=1)]
    with engine.begin() as connection:
        assert feedback.report_feedback(connection, report) == feedback.FeedbackReceipt(2, 0)
    with engine.begin() as connection:
        assert feedback.report_feedback(connection, report) == feedback.FeedbackReceipt(0, 2)
    assert _stored(engine) == {ids[0]: "SIRA", ids[1]: "CALI"}


@pytest.mark.database
def test_a_contradiction_or_an_unknown_record_stores_nothing(migrated) -> None:
    engine, ids = migrated
    when = datetime(2026, 1, 2)
    with engine.begin() as connection:
        feedback.report_feedback(connection, [FeedbackRecord("SIRA", when, record_id=ids[0])])
    with pytest.raises(feedback.ConflictingFeedback) as conflict, engine.begin() as connection:
        feedback.report_feedback(connection, [FeedbackRecord("BOMBAY", when, record_id=ids[2]),
                                              FeedbackRecord("CALI", when, record_id=ids[0])])
    assert conflict.value.conflicts == [feedback.Conflict(ids[0], "SIRA", "CALI")]
    with pytest.raises(feedback.ConflictingFeedback), engine.begin() as connection:  # within one report
        feedback.report_feedback(connection, [FeedbackRecord("BOMBAY", when, record_id=ids[3]),
                                              FeedbackRecord("CALI", when, request_id="a" * 32, bean_index=3)])
    with pytest.raises(feedback.UnknownRecords) as unknown, engine.begin() as connection:
        feedback.report_feedback(connection, [FeedbackRecord("BOMBAY", when, record_id=ids[2]),
                                              FeedbackRecord("CALI", when, record_id=10**9),
                                              FeedbackRecord("CALI", when, request_id="b" * 32, bean_index=0)])
    assert unknown.value.keys == [10**9, ("b" * 32, 0)]
    assert _stored(engine) == {ids[0]: "SIRA"}


@pytest.mark.database
def test_the_durable_path_insert_is_idempotent_and_returns_the_unknown(migrated) -> None:
    engine, ids = migrated
    records = [FeedbackRecord("SIRA", datetime(2026, 1, 2), record_id=ids[0]),
               FeedbackRecord("CALI", datetime(2026, 1, 2), request_id="c" * 32, bean_index=0)]
    with engine.begin() as connection:
        first = feedback.insert_feedback(connection, records, skip_existing=True)
    with engine.begin() as connection:
        again = feedback.insert_feedback(connection, [FeedbackRecord("CALI", datetime(2026, 1, 3), record_id=ids[0])],
                                         skip_existing=True)
    assert (first.inserted, first.unknown, again.inserted) == (1, records[1:], 0)
    assert _stored(engine) == {ids[0]: "SIRA"}
    assert records[0].key == ids[0] and records[1].key == ("c" * 32, 0)
    with pytest.raises(ValueError, match="record_id or by"):
        FeedbackRecord("SIRA", datetime(2026, 1, 2), record_id=1, request_id="a" * 32, bean_index=0)


@pytest.mark.database
def test_confusion_counts_by_model_time_and_newest_reports(migrated) -> None:
    engine, ids = migrated
    with engine.begin() as connection:
        feedback.report_feedback(connection, [FeedbackRecord(v, datetime(2026, 1, 2), record_id=i)
                                              for i, v in zip(ids, ["SIRA", "CALI", "SIRA", "HOROZ"], strict=True)])
    with engine.connect() as connection:
        assert feedback.confusion_counts(connection, model_tag="m:1") == {
            ("SIRA", "SIRA"): 2, ("CALI", "SIRA"): 1, ("HOROZ", "SIRA"): 1}
        assert feedback.confusion_counts(connection, model_tag="m:1", newest=1) == {("HOROZ", "SIRA"): 1}
        assert feedback.confusion_counts(connection, model_tag="m:1", since=datetime(2026, 1, 1, 0, 2)) == {
            ("SIRA", "SIRA"): 1, ("HOROZ", "SIRA"): 1}
        assert feedback.confusion_counts(connection, model_tag="other:1") == {}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require(shutil.which("promtool") is not None, "promtool (Debian package prometheus)")
    return subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.deploy
def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 11 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@pytest.mark.deploy
def test_promtool_unit_tests_exercise_every_alert() -> None:
    result = _promtool("test", "rules", "alerts-test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = set(re.findall(r"- alert: (\w+)", (MONITORING / "alerts.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts-test.yml").read_text()))
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", (MONITORING / "alerts-test.yml")
                           .read_text()))
    assert alerts == tested == fired, "every alert is tested firing"
