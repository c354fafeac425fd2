"""The shortcuts of `/predict` and `/v1/classify` (serving/shortcut.py): which requests they answer, and that their
answers are the routes'.

In process: a real service instance (embedded SQLite) behind the shortcut, with an application behind it that
stands for BentoML's route and echoes what reached it. Over HTTP: a real server, where a request with an
`Origin` header always takes BentoML's route, answers each request the same both ways.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _bentoml_sdk.service import set_current_service
from starlette.requests import Request
from starlette.responses import Response

from api.schemas import EXAMPLE_ROW
from data.schema import FEATURES
from serving.shortcut import ClassifyShortcut, PredictShortcut, Shortcut, plain_request
from tests.bad_requests import CORPUS
from tests.servers import MySQLDatabase, Server, bentoml_serve

ROW_TEXT = json.dumps([EXAMPLE_ROW])
PLAIN = [
    {"data": ROW_TEXT},
    {"data": ROW_TEXT, "store": False},
    {"data": [EXAMPLE_ROW, EXAMPLE_ROW], "store": True},
    {"store": False, "data": json.dumps([EXAMPLE_ROW] * 3)},
]
NOT_PLAIN = [
    b'{"data": "[]", "stor": false}',  # a misspelt key: the route names it
    b'{"data": "[]", "store": "no"}',  # lax booleans are the route's to read
    b'{"data": "[]", "store": 0}',
    b'{"data": 5}',
    b'{"store": true}',
    b'[{"data": "[]"}]',
    b'{"data": NaN}',
    b"",
]
ROUTE_STATUS = 299  # what the stand-in for BentoML's route answers
BEAN = dict(zip(FEATURES, EXAMPLE_ROW, strict=True))
PLAIN_CLASSIFY = [
    {"beans": [BEAN]},
    {"beans": [BEAN, BEAN], "store": False, "coverage": 0.9},
    {"beans": [BEAN], "explain": True, "store": False},
]
NOT_PLAIN_CLASSIFY = [
    b'{"beans": [], "store": false}',  # no bean: the route names the problem
    b'{"bean": [], "store": false}',
    json.dumps({"beans": [BEAN], "coverage": 0.2}).encode(),
    json.dumps({"beans": [{**BEAN, "Area": "big"}]}).encode(),
    b"",
]


@pytest.mark.parametrize("body", PLAIN, ids=range(len(PLAIN)))
def test_the_tutorials_plain_shape_is_taken(body: dict[str, Any]) -> None:
    assert plain_request(json.dumps(body).encode()) == (body["data"], body.get("store", True))


@pytest.mark.parametrize("body", NOT_PLAIN, ids=range(len(NOT_PLAIN)))
def test_every_other_shape_is_left_to_the_route(body: bytes) -> None:
    assert plain_request(body) is None


async def route(scope: Any, receive: Any, send: Any) -> None:
    """Stands for BentoML's route: answers ROUTE_STATUS with the body that reached it."""
    body = await Request(scope, receive).body()
    await Response(body, status_code=ROUTE_STATUS)(scope, receive, send)


@pytest.fixture(scope="module")
def service_instance(trained_model_home: Path, tmp_path_factory: pytest.TempPathFactory,
                     ) -> Iterator[Any]:
    """A real DryBeans instance in this process, recording into SQLite, as BentoML's current service."""
    directory = tmp_path_factory.mktemp("shortcut")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRYBEANS_SQLITE_PATH", str(directory / "drybeans.sqlite3"))
        patch.setenv("DRYBEANS_SPOOL_DIR", str(directory / "spool"))
        patch.setenv("DRYBEANS_REUSE_PORT", "false")
        from config import get_settings
        from service import DryBeans

        get_settings.cache_clear()
        instance = DryBeans.inner()  # type: ignore[attr-defined]
        get_settings.cache_clear()
    set_current_service(instance)
    yield instance
    set_current_service(None)
    asyncio.run(instance.close())


def post(path: str, body: bytes, headers: dict[str, str] | None = None,
         shortcut: type[Shortcut] = PredictShortcut) -> httpx.Response:
    """POST `body` through the shortcut, with the stand-in route behind it."""
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=shortcut(route, service_name="drybeans"))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post(path, content=body, headers={"content-type": "application/json", **(headers or {})})

    return asyncio.run(send())


@pytest.mark.parametrize("body", PLAIN, ids=range(len(PLAIN)))
def test_a_plain_request_is_answered_without_the_route(service_instance: Any, body: dict[str, Any]) -> None:
    response = post("/predict", json.dumps(body).encode())
    assert response.status_code == 200
    beans = len(json.loads(body["data"]) if isinstance(body["data"], str) else body["data"])
    assert json.loads(response.json()["predictions"]) == ["DERMASON"] * beans
    stored = body.get("store", True)
    assert response.headers["x-prediction-store"] == ("committed" if stored else "skipped")
    assert ("x-request-id" in response.headers) == stored
    assert response.headers["server"] == "BentoML Service/drybeans"


@pytest.mark.parametrize("body", NOT_PLAIN, ids=range(len(NOT_PLAIN)))
def test_any_other_request_reaches_the_route_with_its_body(service_instance: Any, body: bytes) -> None:
    response = post("/predict", body)
    assert (response.status_code, response.content) == (ROUTE_STATUS, body)


def test_errors_cross_origin_requests_and_other_routes_reach_the_route(service_instance: Any) -> None:
    invalid = json.dumps({"data": "[[1, 2]]"}).encode()  # parses as plain; the route names the problem
    cross_origin = json.dumps(PLAIN[0]).encode()
    for path, body, headers in [("/predict", invalid, {}), ("/predict", cross_origin, {"origin": "http://a.test"}),
                                ("/v1/classify", cross_origin, {})]:
        response = post(path, body, headers)
        assert (response.status_code, response.content) == (ROUTE_STATUS, body), path


@pytest.mark.parametrize("body", PLAIN_CLASSIFY, ids=range(len(PLAIN_CLASSIFY)))
def test_a_valid_classify_request_is_answered_without_the_route(service_instance: Any, body: dict[str, Any]) -> None:
    response = post("/v1/classify", json.dumps(body).encode(), shortcut=ClassifyShortcut)
    assert response.status_code == 200
    answer = response.json()
    assert [bean["label"] for bean in answer["predictions"]] == ["DERMASON"] * len(body["beans"])
    assert all(bean["prediction_set"] and bean["consistent"] for bean in answer["predictions"])
    assert answer["stored"] == ("committed" if body.get("store", True) else "skipped")
    assert all(("explanation" in bean) == body.get("explain", False) for bean in answer["predictions"])


@pytest.mark.parametrize("body", NOT_PLAIN_CLASSIFY, ids=range(len(NOT_PLAIN_CLASSIFY)))
def test_an_invalid_classify_request_reaches_the_route_with_its_body(service_instance: Any, body: bytes) -> None:
    response = post("/v1/classify", body, shortcut=ClassifyShortcut)
    assert (response.status_code, response.content) == (ROUTE_STATUS, body)


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    """A real server recording into MySQL."""
    with bentoml_serve(mysql_db.env, tmp_path_factory.mktemp("logs")) as running:
        yield running


SHORTCUT_CASES = [case for case in CORPUS if case.path in ("/predict", "/v1/classify")]
UNSTORED_CLASSIFY = [body for body in PLAIN_CLASSIFY if body.get("store") is False]  # no ids: the same bytes
# Each makes one request's arguments anew (a chunked body is an iterator, spent once sent).
REQUESTS: list[Callable[[], dict[str, Any]]] = [
    *[lambda body=body: {"method": "POST", "url": "/predict", "json": body} for body in PLAIN],
    *[lambda body=body: {"method": "POST", "url": "/v1/classify", "json": body} for body in UNSTORED_CLASSIFY],
    *[case.request for case in SHORTCUT_CASES]]


@pytest.mark.system
@pytest.mark.parametrize("make_request", REQUESTS,
                         ids=[*(f"plain-{index}" for index in range(len(PLAIN))),
                              *(f"classify-{index}" for index in range(len(UNSTORED_CLASSIFY))),
                              *(c.name for c in SHORTCUT_CASES)])
def test_both_paths_give_the_same_answer(server: Server, make_request: Callable[[], dict[str, Any]]) -> None:
    cross_origin = make_request()
    cross_origin["headers"] = {**cross_origin.get("headers", {}), "Origin": "http://a.test"}
    with server.client() as http:
        answers = [http.request(**make_request()), http.request(**cross_origin)]
    shortcut, route_answer = ((response.status_code, response.content, comparable(response.headers))
                              for response in answers)
    assert shortcut == route_answer


def comparable(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The headers, without the date, and with a request id's value reduced to its shape."""
    return [(name, "32 hex" if name == "x-request-id" and len(value) == 32 else value)
            for name, value in headers.multi_items() if name != "date"]
