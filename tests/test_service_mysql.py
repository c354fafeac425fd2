"""The service over real HTTP (`bentoml serve`, two workers) recording into a real MySQL-compatible server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests
from sqlalchemy import text

from api import errors
from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from data.readers import read_dataset
from data.schema import CLASSES, FEATURES
from tests.servers import MySQLDatabase, Server, bentoml_serve

pytestmark = pytest.mark.system

TUTORIAL_PAYLOAD = {"data": "[[33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, \
                      207.93, 0.82, 0.99, 0.93, 0.82, 0.01, 0.0, 0.67, 1.0]]"}  # verbatim from the tutorial


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    with bentoml_serve(mysql_db.env, tmp_path_factory.mktemp("logs")) as running:
        yield running


def _count(db: MySQLDatabase, where: str = "1=1", **params: object) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text(f"SELECT COUNT(*) FROM drybeans WHERE {where}"), params))


def test_the_tutorials_client_gets_the_tutorials_answer_and_the_row_is_in_mysql(server: Server,
                                                                                mysql_db: MySQLDatabase) -> None:
    before = _count(mysql_db)
    response = requests.post(f"{server.url}/predict", json=TUTORIAL_PAYLOAD, timeout=30)  # the tutorial's client
    assert json.loads(response.content) == {"predictions": '["DERMASON"]'}
    assert _count(mysql_db) == before + 1
    with mysql_db.engine().connect() as connection:
        row = connection.execute(text("SELECT name, created_at, model_tag, request_id, area, shape_factor_4 "
                                      "FROM drybeans ORDER BY id DESC LIMIT 1")).one()
    assert row.name == "DERMASON" and row.created_at is not None
    assert row.model_tag.startswith("drybean_svc:") and len(row.request_id) == 32
    assert (row.area, row.shape_factor_4) == (33958.0, 1.0)


def test_store_false_writes_nothing(server: Server, mysql_db: MySQLDatabase) -> None:
    before = _count(mysql_db)
    response = httpx.post(f"{server.url}/predict", json={**TUTORIAL_PAYLOAD, "store": False})
    assert response.json() == {"predictions": '["DERMASON"]'}
    assert _count(mysql_db) == before


def test_data_as_a_plain_array_of_many_rows(server: Server, shared_csv: Path, mysql_db: MySQLDatabase) -> None:
    dataset = read_dataset(shared_csv)
    sample = dataset.features.iloc[::1000]
    before = _count(mysql_db)
    response = httpx.post(f"{server.url}/predict", json={"data": sample.to_numpy().tolist()})
    labels = json.loads(response.json()["predictions"])
    assert len(labels) == len(sample) and set(labels) <= set(CLASSES)
    # The model is right on almost all of them: the labels are real predictions, not a constant.
    assert np.mean(np.array(labels) == dataset.labels.iloc[::1000].to_numpy()) > 0.85
    assert _count(mysql_db) == before + len(sample)


def test_typed_endpoint_returns_labels_scores_and_stored_ids(server: Server, shared_csv: Path,
                                                             mysql_db: MySQLDatabase) -> None:
    dataset = read_dataset(shared_csv)
    beans = [dict(zip(FEATURES, row, strict=True)) for row in dataset.features.iloc[:5].to_numpy().tolist()]
    body = httpx.post(f"{server.url}/v1/classify", json={"beans": [EXAMPLE_BEAN, *beans]}).json()
    assert body["stored"] == "committed" and body["model"].startswith("drybean_svc:")
    predictions = body["predictions"]
    assert predictions[0]["label"] == "DERMASON"
    for prediction in predictions:
        assert set(prediction["scores"]) == set(CLASSES)
        assert max(prediction["scores"], key=prediction["scores"].get) == prediction["label"]
    ids = [p["record_id"] for p in predictions]
    with mysql_db.engine().connect() as connection:
        stored = dict(connection.execute(text("SELECT id, name FROM drybeans WHERE request_id = :r"),
                                         {"r": body["request_id"]}).all())
    assert stored == {id_: p["label"] for id_, p in zip(ids, predictions, strict=True)}


def test_typed_endpoint_with_store_false(server: Server, mysql_db: MySQLDatabase) -> None:
    before = _count(mysql_db)
    body = httpx.post(f"{server.url}/v1/classify", json={"beans": [EXAMPLE_BEAN], "store": False}).json()
    assert body["stored"] == "skipped" and body["predictions"][0]["record_id"] is None
    assert _count(mysql_db) == before


def test_read_endpoints_page_filter_and_count(server: Server, mysql_db: MySQLDatabase) -> None:
    httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW] * 3})
    with mysql_db.engine().connect() as connection:
        expected = dict(connection.execute(text("SELECT name, COUNT(*) FROM drybeans GROUP BY name")).all())
        newest = connection.scalar(text("SELECT MAX(id) FROM drybeans"))
    counts = httpx.get(f"{server.url}/v1/predictions/counts").json()
    assert counts == {"counts": expected, "total": sum(expected.values())}

    first = httpx.get(f"{server.url}/v1/predictions", params={"limit": 2}).json()
    assert first["total"] == sum(expected.values()) and first["limit"] == 2 and first["offset"] == 0
    assert [item["id"] for item in first["items"]] == [newest, newest - 1]
    assert first["items"][0]["features"] == dict(zip(FEATURES, EXAMPLE_ROW, strict=True))
    second = httpx.get(f"{server.url}/v1/predictions", params={"limit": 2, "offset": 2}).json()
    assert second["items"][0]["id"] < first["items"][-1]["id"]

    only = httpx.get(f"{server.url}/v1/predictions", params={"variety": "DERMASON", "limit": 1000}).json()
    assert only["total"] == expected["DERMASON"] == len(only["items"])
    assert {item["name"] for item in only["items"]} == {"DERMASON"}


def test_32_concurrent_clients_store_every_row_without_error(server: Server, mysql_db: MySQLDatabase) -> None:
    clients, per_client = 32, 5
    before = _count(mysql_db)
    statuses: list[int] = []
    barrier = threading.Barrier(clients)

    def client() -> None:
        # A connection per request: 160 accepts spread over both workers (32 keep-alive connections opened at
        # once can all be accepted by whichever worker wakes first).
        with server.client(headers={"Connection": "close"}) as http:
            barrier.wait()
            for _ in range(per_client):
                response = http.post("/predict", json=TUTORIAL_PAYLOAD)
                statuses.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [200] * clients * per_client
    assert _count(mysql_db) == before + clients * per_client
    assert "Traceback" not in server.output()
    served_by = {worker for worker in ("1", "2") if f"[entry_service:drybeans:{worker}] 127.0.0.1" in server.output()}
    assert served_by == {"1", "2"}, "both workers should have served requests"


BAD_REQUESTS: list[tuple[str, str, object, int, str]] = [
    # (id, path, JSON body, status, text the error names)
    ("15-features", "/predict", {"data": [EXAMPLE_ROW[:15]]}, 400,
     errors.WRONG_FEATURE_COUNT.format(row=1, count=15, names=", ".join(FEATURES))),
    ("17-features", "/predict", {"data": json.dumps([[*EXAMPLE_ROW, 1.0]])}, 400, "row 1 has 17 features"),
    ("non-numeric", "/predict", {"data": [[*EXAMPLE_ROW[:3], "abc", *EXAMPLE_ROW[4:]]]}, 400,
     errors.NOT_A_NUMBER.format(row=1, feature="MinorAxisLength", value='"abc"')),
    ("null-value", "/predict", {"data": [[None, *EXAMPLE_ROW[1:]]]}, 400, "feature Area: null is not a number"),
    ("bool-value", "/predict", {"data": [[True, *EXAMPLE_ROW[1:]]]}, 400, "feature Area: true is not a number"),
    ("nan-in-string", "/predict", {"data": "[[NaN" + ", 1.0" * 15 + "]]"}, 400, "NaN is not a number JSON allows"),
    ("infinite", "/predict", {"data": "[[1e999" + ", 1.0" * 15 + "]]"}, 400, "feature Area: inf is not a finite"),
    ("huge-int", "/predict", {"data": [[10**400, *EXAMPLE_ROW[1:]]]}, 400, "is not a finite number"),
    ("empty-list", "/predict", {"data": []}, 400, errors.NO_BEANS),
    ("empty-string-list", "/predict", {"data": "[]"}, 400, errors.NO_BEANS),
    ("malformed-data-string", "/predict", {"data": "[[1, 2"}, 400, "data is not valid JSON"),
    ("data-not-rows", "/predict", {"data": "{\"a\": 1}"}, 400, errors.DATA_NOT_A_LIST),
    ("flat-row", "/predict", {"data": EXAMPLE_ROW}, 400, errors.ROW_NOT_A_LIST.format(row=1)),
    ("data-wrong-type", "/predict", {"data": 5}, 400, "data"),
    ("missing-data", "/predict", {"store": False}, 400, "data: Field required"),
    ("store-wrong-type", "/predict", {"data": [EXAMPLE_ROW], "store": "perhaps"}, 400, "store"),
    ("body-not-object", "/predict", [1, 2], 400, "Input should be"),
    ("typed-unknown-field", "/v1/classify", {"beans": [{**EXAMPLE_BEAN, "Colour": 1.0}]}, 400,
     "beans.0.Colour: Extra inputs are not permitted"),
    ("typed-unknown-top-field", "/v1/classify", {"beans": [EXAMPLE_BEAN], "debug": True}, 400, "debug"),
    ("typed-missing-feature", "/v1/classify", {"beans": [{k: v for k, v in EXAMPLE_BEAN.items() if k != "Area"}]},
     400, "beans.0.Area: Field required"),
    ("typed-string-number", "/v1/classify", {"beans": [{**EXAMPLE_BEAN, "Area": "33958"}]}, 400, "beans.0.Area"),
    ("typed-no-beans", "/v1/classify", {"beans": []}, 400, "beans"),
    ("typed-beans-not-list", "/v1/classify", {"beans": EXAMPLE_BEAN}, 400, "beans"),
]


@pytest.mark.parametrize(("path", "body", "status", "names"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_json_object_naming_the_problem(server: Server, mysql_db: MySQLDatabase, path: str,
                                                             body: object, status: int, names: str) -> None:
    before = _count(mysql_db)
    response = httpx.post(server.url + path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert isinstance(payload, dict) and names in payload["error"], payload
    assert payload["code"] in {"invalid_input", "too_large"}
    assert _count(mysql_db) == before


def test_malformed_json_body_and_wrong_content_type(server: Server) -> None:
    broken = httpx.post(f"{server.url}/predict", content=b'{"data": [[1,', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "Invalid JSON" in broken.json()["error"]
    form = httpx.post(f"{server.url}/predict", data={"data": "[[1]]"})
    assert 400 <= form.status_code < 500 and isinstance(form.json()["error"], str)


def test_client_errors_are_not_logged_as_server_errors(server: Server) -> None:
    httpx.post(f"{server.url}/v1/classify", json={"beans": [{"Area": "x"}]})
    httpx.post(f"{server.url}/predict", json={"data": 5})
    log = server.output()
    assert "Traceback" not in log and "[ERROR]" not in log
    assert "client error" in log
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_home_page_links_to_the_api_docs_which_stay_reachable(server: Server) -> None:
    home = httpx.get(f"{server.url}/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'href="docs"' in home.text and "drybean_svc:" in home.text
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(f"{server.url}/static_content/swagger-ui-bundle.js").status_code == 200
    spec = httpx.get(f"{server.url}/docs.json").json()
    for path in ("/predict", "/v1/classify", "/v1/predictions", "/v1/predictions/counts", "/livez", "/readyz"):
        assert path in spec["paths"], path
    bean = spec["components"]["schemas"]["Bean"]
    assert set(bean["properties"]) == set(FEATURES) and bean["properties"]["Area"]["description"]


def test_health_endpoints(server: Server) -> None:
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
