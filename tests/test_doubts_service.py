"""Which answers to doubt, through a real `bentoml serve` on MariaDB (issue #22): prediction sets holding their
coverage on the holdout, consistency and distribution flags in /v1/classify, V2's new outputs, the records' flags,
the counters, and DRYBEANS_REJECT_INCONSISTENT refusing before anything is recorded. /predict keeps its bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from api.schemas import EXAMPLE_BEAN
from data.schema import FEATURES
from db.models import Prediction
from tests.servers import MySQLDatabase, Server, bentoml_serve
from tests.support import Split

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    env = {**mysql_db.env, "BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1"}
    with bentoml_serve(env, tmp_path_factory.mktemp("doubts")) as running:
        yield running


@pytest.fixture(scope="module")
def labelled_holdout(split: Split) -> tuple[np.ndarray, np.ndarray]:
    return split.x_test, split.y_test


def classify(server: Server, beans: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    with server.client() as http:
        answer = http.post("/v1/classify", json={"beans": beans, **options})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def with_typo(bean: dict[str, Any], feature: str, factor: float) -> dict[str, Any]:
    return {**bean, feature: bean[feature] * factor}


@pytest.mark.parametrize("coverage", [0.90, 0.95, 0.99])
def test_prediction_sets_hold_their_coverage_on_the_holdout(server: Server, coverage: float,
                                                            labelled_holdout: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = labelled_holdout
    beans = [dict(zip(FEATURES, row, strict=True)) for row in x.tolist()]
    answer = classify(server, beans, store=False, coverage=coverage)
    covered = [truth in bean["prediction_set"] for truth, bean in zip(y.tolist(), answer["predictions"], strict=True)]
    assert abs(np.mean(covered) - coverage) <= 0.015, np.mean(covered)
    assert all(bean["consistent"] for bean in answer["predictions"])  # measured beans agree with themselves


def test_a_typo_is_flagged_with_what_disagrees_and_the_flags_are_recorded(server: Server,
                                                                           mysql_db: MySQLDatabase) -> None:
    clean, typo = EXAMPLE_BEAN, with_typo(EXAMPLE_BEAN, "ShapeFactor1", 10)
    answer = classify(server, [clean, typo])
    first, second = answer["predictions"]
    assert first["consistent"] and "inconsistencies" not in first and first["in_distribution"] is True
    assert first["prediction_set"] == ["DERMASON"] and first["needs_review"] is False
    assert second["consistent"] is False and second["needs_review"] is True
    assert [(problem["feature"], problem["sent"]) for problem in second["inconsistencies"]][:1] == [
        ("ShapeFactor1", typo["ShapeFactor1"])]
    with mysql_db.engine().connect() as connection:
        stored = connection.execute(select(Prediction.consistent, Prediction.in_distribution, Prediction.needs_review)
                                    .where(Prediction.request_id == answer["request_id"])
                                    .order_by(Prediction.bean_index)).all()
    assert [tuple(row) for row in stored] == [(True, True, False), (False, second["in_distribution"], True)]
    with server.client() as http:
        metrics = http.get("/metrics").text
    assert 'drybeans_doubtful_beans_total{flag="inconsistent"}' in metrics


def test_v2_answers_the_doubts_as_outputs(server: Server) -> None:
    typo = with_typo(EXAMPLE_BEAN, "Area", 10)
    rows = [[float(bean[name]) for name in FEATURES] for bean in (EXAMPLE_BEAN, typo)]  # type: ignore[arg-type]
    request = {"inputs": [{"name": "features", "shape": [2, 16], "datatype": "FP64", "data": rows}]}
    with server.client() as http:
        everything = http.post("/v2/models/drybean_svc/infer", json=request).json()
        chosen = http.post("/v2/models/drybean_svc/infer", json={**request, "outputs": [
            {"name": "prediction_set"}, {"name": "needs_review"}, {"name": "consistent"}]}).json()
        metadata = http.get("/v2/models/drybean_svc").json()
    assert [output["name"] for output in everything["outputs"]] == [output["name"] for output in metadata["outputs"]]
    assert {output["name"]: output["data"] for output in chosen["outputs"]} == {
        "prediction_set": ["DERMASON", chosen["outputs"][0]["data"][1]], "needs_review": [False, True],
        "consistent": [True, False]}


def test_predict_keeps_the_tutorials_bytes(server: Server) -> None:
    with server.client() as http:
        answer = http.post("/predict", json={"data": [list(EXAMPLE_BEAN.values())], "store": False})
    assert answer.content == b'{"predictions":"[\\"DERMASON\\"]"}'


def test_inconsistent_beans_can_be_refused_before_anything_is_recorded(trained_model_home: Path,
                                                                       mysql_db: MySQLDatabase,
                                                                       tmp_path: Path) -> None:
    env = {**mysql_db.env, "DRYBEANS_REJECT_INCONSISTENT": "true",
           "BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1"}
    with mysql_db.engine().connect() as connection:
        before = connection.scalar(select(func.count()).select_from(Prediction))
    with bentoml_serve(env, tmp_path) as strict, strict.client() as http:
        refused = http.post("/v1/classify", json={"beans": [EXAMPLE_BEAN, with_typo(EXAMPLE_BEAN, "Perimeter", 0.1)]})
        accepted = http.post("/v1/classify", json={"beans": [EXAMPLE_BEAN]})
    assert refused.status_code == 422 and refused.json()["code"] == "inconsistent_features"
    assert "bean 1: " in refused.json()["error"] and "nothing was recorded" in refused.json()["error"]
    assert accepted.status_code == 200
    with mysql_db.engine().connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Prediction)) == before + 1
