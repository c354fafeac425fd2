"""The monitoring story against a real `bentoml serve` (two workers) and MariaDB: traffic, feedback, live quality
equal to the offline figure, drift on one shifted feature, the feedback rules, and the metrics the dashboard and
the alerts use."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sqlalchemy import text

from api import errors
from api.schemas import EXAMPLE_BEAN
from data.schema import CLASSES, FEATURES
from tests.servers import ROOT, MySQLDatabase, Server, bentoml_serve
from tests.support import Split

pytestmark = pytest.mark.system

MONITORING = ROOT / "deploy" / "monitoring"
CHUNK = 1000


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    env = {**mysql_db.env, "DRYBEANS_MONITORING_INTERVAL_SECONDS": "1"}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def holdout(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """train.py's held-out part of the dataset."""
    return split.x_test, split.y_test


def classify(http: httpx.Client, rows: np.ndarray) -> list[dict[str, Any]]:
    """Send rows as traffic; each bean's label, record id, request id and index."""
    beans = []
    for start in range(0, len(rows), CHUNK):
        chunk = [dict(zip(FEATURES, row, strict=True)) for row in rows[start:start + CHUNK].tolist()]
        body = http.post("/v1/classify", json={"beans": chunk}).json()
        assert body.get("stored") == "committed", body
        beans += [{"label": p["label"], "record_id": p["record_id"], "request_id": body["request_id"],
                   "bean_index": index} for index, p in enumerate(body["predictions"])]
    return beans


def report(http: httpx.Client, items: list[dict[str, Any]]) -> list[httpx.Response]:
    return [http.post("/v1/feedback", json={"items": items[start:start + CHUNK]})
            for start in range(0, len(items), CHUNK)]


def whole_second_now() -> str:
    """Now, to the second below (TIMESTAMP columns keep whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def test_live_quality_equals_the_offline_figures_and_drift_flags_only_the_shifted_feature(
        http: httpx.Client, holdout: tuple[np.ndarray, np.ndarray]) -> None:
    x_test, y_test = holdout
    since = whole_second_now()
    started = time.perf_counter()
    beans = classify(http, x_test)
    replayed = time.perf_counter() - started
    # Half the beans named by record id, half by (request_id, bean_index), as clients may.
    items = [{"record_id": bean["record_id"], "variety": truth} if i % 2 else
             {"request_id": bean["request_id"], "bean_index": bean["bean_index"], "variety": truth}
             for i, (bean, truth) in enumerate(zip(beans, y_test.tolist(), strict=True))]
    started = time.perf_counter()
    answers = report(http, items)
    reported = time.perf_counter() - started
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert sum(a.json()["recorded"] for a in answers) == len(y_test)

    model = bentoml.models.get("drybean_svc:latest")
    offline = bentoml.sklearn.load_model(model).predict(x_test)
    started = time.perf_counter()
    quality = http.get("/v1/quality", params={"since": since}).json()
    read = time.perf_counter() - started
    assert quality["model"] == str(model.tag) and quality["labelled"] == len(y_test)
    assert quality["accuracy"] == {"live": pytest.approx(accuracy_score(y_test, offline), abs=1e-12),
                                   "count": len(y_test), "training": model.info.metadata["metrics"]["holdout_accuracy"]}
    assert quality["confusion_matrix"]["live"] == confusion_matrix(y_test, offline, labels=list(CLASSES)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(y_test, offline, labels=list(CLASSES))
    for i, name in enumerate(CLASSES):
        figures = quality["per_class"][name]
        assert (figures["precision"]["live"], figures["recall"]["live"], figures["f1"]["live"]) == pytest.approx(
            (precision[i], recall[i], f1[i]), abs=1e-12)
        assert figures["recall"]["count"] == support[i]

    steady = http.get("/v1/drift", params={"window": len(y_test)}).json()
    assert steady["beans"] == len(y_test) and steady["drifted"] == []
    shifted = x_test.copy()
    shifted[:, FEATURES.index("Area")] *= 1.5
    classify(http, shifted)
    started = time.perf_counter()
    drift = http.get("/v1/drift", params={"window": len(y_test)}).json()
    drift_read = time.perf_counter() - started
    assert drift["drifted"] == ["Area"] and drift["features"]["Area"]["outside_training_range"] > 0
    assert all(figure["psi"] < drift["threshold"] for name, figure in drift["features"].items() if name != "Area")
    print(f"\nreplay {len(y_test)} beans {replayed:.2f} s, feedback {reported:.2f} s, "
          f"/v1/quality {read * 1000:.0f} ms, /v1/drift {drift_read * 1000:.0f} ms; "
          f"accuracy live {quality['accuracy']['live']:.4f}; "
          f"max PSI steady {max(f['psi'] for f in steady['features'].values()):.4f}, class mix "
          f"{steady['class_mix']['psi']:.4f}; Area x 1.5: PSI {drift['features']['Area']['psi']:.3f}, outside "
          f"{drift['features']['Area']['outside_training_range']:.3%}, class mix {drift['class_mix']['psi']:.3f}, "
          f"next highest PSI {sorted(f['psi'] for f in drift['features'].values())[-2]:.4f}")


def test_metrics_export_every_name_the_dashboard_and_the_alerts_use(http: httpx.Client) -> None:
    # After the story: the newest window holds enough reported beans for drybeans_live_accuracy.
    time.sleep(2.5)  # the gauges are recomputed every second here
    exported = set()
    for _ in range(4):  # either worker may answer; each computes the gauges itself
        exported |= {line.split("{")[0].split(" ")[0] for line in http.get("/metrics").text.splitlines()
                     if line and not line.startswith("#")}
    used = set()
    for path in (MONITORING / "dashboard.json", MONITORING / "alerts.yml"):
        used |= set(re.findall(r"\b(?:bentoml|drybeans)_[a-z0-9_]+\b", path.read_text()))
    assert used - exported == set()
    assert {"drybeans_live_accuracy", "drybeans_drift_psi", "bentoml_service_request_total"} <= used
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    assert all(panel.get("targets") for panel in dashboard["panels"] if panel["type"] != "row")


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict) and body["code"] == code and isinstance(body["error"], str)
    return str(body["error"])


def _feedback_rows(db: MySQLDatabase, record_id: int) -> list[str]:
    with db.engine().connect() as connection:
        return list(connection.scalars(text("SELECT variety FROM feedback WHERE record_id = :r"), {"r": record_id}))


def test_a_report_is_one_fact_however_often_and_however_named(http: httpx.Client, mysql_db: MySQLDatabase) -> None:
    bean = classify(http, np.array([list(EXAMPLE_BEAN.values())]))[0]
    by_id = {"record_id": bean["record_id"], "variety": "SIRA"}
    by_key = {"request_id": bean["request_id"], "bean_index": 0, "variety": "SIRA"}
    first = http.post("/v1/feedback", json={"items": [by_id, by_key]})
    assert first.status_code == 200 and first.json() == {"stored": "committed", "recorded": 1, "already_known": 0}
    assert http.post("/v1/feedback", json={"items": [by_key]}).json() == {"stored": "committed", "recorded": 0,
                                                                          "already_known": 1}
    assert _feedback_rows(mysql_db, bean["record_id"]) == ["SIRA"]


def test_a_contradicting_report_is_409_naming_the_record_and_stores_nothing(http: httpx.Client,
                                                                           mysql_db: MySQLDatabase) -> None:
    first, second = classify(http, np.array([list(EXAMPLE_BEAN.values())] * 2))
    http.post("/v1/feedback", json={"items": [{"record_id": first["record_id"], "variety": "DERMASON"}]})
    response = http.post("/v1/feedback", json={"items": [{"record_id": second["record_id"], "variety": "SIRA"},
                                                         {"record_id": first["record_id"], "variety": "SEKER"}]})
    message = _error(response, 409, "conflict")
    assert f"record {first['record_id']} is reported as DERMASON, not SEKER" in message
    assert _feedback_rows(mysql_db, first["record_id"]) == ["DERMASON"]
    assert _feedback_rows(mysql_db, second["record_id"]) == []


def test_unknown_records_are_404_naming_each(http: httpx.Client) -> None:
    response = http.post("/v1/feedback", json={"items": [{"record_id": 2_000_000_000, "variety": "SIRA"},
                                                         {"request_id": "0" * 32, "bean_index": 3, "variety": "CALI"}]})
    message = _error(response, 404, "not_found")
    assert message.startswith(errors.UNKNOWN_RECORDS.format(records=f"record 2000000000, request {'0' * 32} bean 3"
                                                            ).split(";")[0])


BAD_FEEDBACK: list[tuple[str, object, str]] = [
    ("both-names", {"items": [{"record_id": 1, "request_id": "ab", "bean_index": 0, "variety": "SIRA"}]}, "not both"),
    ("no-name", {"items": [{"variety": "SIRA"}]}, "not both"),
    ("index-without-request", {"items": [{"bean_index": 0, "variety": "SIRA"}]}, "go together"),
    ("unknown-variety", {"items": [{"record_id": 1, "variety": "PINTO"}]}, "unknown variety 'PINTO'"),
    ("no-variety", {"items": [{"record_id": 1}]}, "variety: Field required"),
    ("string-id", {"items": [{"record_id": "1", "variety": "SIRA"}]}, "record_id"),
    ("negative-index", {"items": [{"request_id": "ab", "bean_index": -1, "variety": "SIRA"}]}, "bean_index"),
    ("request-id-not-hex", {"items": [{"request_id": "x'; --", "bean_index": 0, "variety": "SIRA"}]}, "request_id"),
    ("no-items", {"items": []}, "items"),
    ("extra-field", {"items": [{"record_id": 1, "variety": "SIRA", "note": "x"}]}, "note"),
    ("not-an-object", [1, 2], "Input should be"),
]


@pytest.mark.parametrize(("body", "names"), [case[1:] for case in BAD_FEEDBACK], ids=[c[0] for c in BAD_FEEDBACK])
def test_bad_feedback_is_a_4xx_json_object_naming_the_problem(http: httpx.Client, body: object, names: str) -> None:
    response = http.post("/v1/feedback", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and names in _error(response, response.status_code, "invalid_input")


@pytest.mark.parametrize(("path", "params", "names"), [
    ("/v1/quality", {"since": "yesterday"}, "since"),
    ("/v1/quality", {"model": "x" * 200}, "model"),
    ("/v1/drift", {"window": 5}, "greater than or equal to 10"),
    ("/v1/drift", {"window": 10**9}, "less than or equal to"),
    ("/v1/drift", {"window": "all"}, "window"),
])
def test_bad_query_parameters_are_4xx_json(http: httpx.Client, path: str, params: dict[str, object],
                                           names: str) -> None:
    response = http.get(path, params=params)
    assert 400 <= response.status_code < 500 and names in _error(response, response.status_code, "invalid_input")


def test_quality_figures_are_null_below_the_minimum_count(http: httpx.Client,
                                                          holdout: tuple[np.ndarray, np.ndarray]) -> None:
    x_test, y_test = holdout
    time.sleep(1.1)  # past every earlier record's second
    since = whole_second_now()
    beans = classify(http, x_test[:12])
    report(http, [{"record_id": b["record_id"], "variety": v} for b, v in zip(beans, y_test[:12].tolist(),
                                                                               strict=True)])
    quality = http.get("/v1/quality", params={"since": since}).json()
    assert quality["labelled"] == 12 and quality["min_count"] == 30
    assert quality["accuracy"]["live"] is None and quality["accuracy"]["count"] == 12
    assert quality["accuracy"]["training"] is not None
    assert all(figure["live"] is None for scores in quality["per_class"].values() for figure in scores.values())
    assert sum(map(sum, quality["confusion_matrix"]["live"])) == 12  # counts are always given
    other = http.get("/v1/quality", params={"model": "drybean_svc:another"}).json()
    assert other["labelled"] == 0 and other["accuracy"] == {"live": None, "count": 0, "training": None}
