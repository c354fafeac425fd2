"""protocol/shortcut.py: V2 JSON inference answered by a middleware, with the route's own bytes and headers.

Each request is sent twice to a real server: as is (the shortcut answers what it can) and with an `Origin` header,
which sends it the whole way to FastAPI's route. Both answers must be the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.schemas import EXAMPLE_ROW
from data.schema import FEATURES
from protocol.shortcut import INFER_PATH
from tests.bad_requests import CORPUS, JSON
from tests.servers import MySQLDatabase, Server, bentoml_serve

pytestmark = pytest.mark.system
V2_INFER = "/v2/models/drybean_svc/infer"


def tensor(name: str = "features", shape: list[int] | None = None, data: list[float] | None = None) -> dict[str, Any]:
    return {"name": name, "shape": shape or [1, 16], "datatype": "FP64", "data": data or EXAMPLE_ROW}


GOOD = {
    "features": {"inputs": [tensor()], "parameters": {"store": False}},
    "any-name": {"inputs": [tensor("input-0", [2, 16], EXAMPLE_ROW * 2)], "parameters": {"store": False}},
    "columns": {"inputs": [tensor(name, [1], [value]) for name, value in zip(FEATURES, EXAMPLE_ROW, strict=True)],
                "parameters": {"store": False}},
    "outputs-and-id": {"id": "42", "inputs": [tensor()], "outputs": [{"name": "probabilities"}, {"name": "label"}],
                       "parameters": {"store": False}},
    "fp32": {"inputs": [{**tensor(), "datatype": "FP32"}], "parameters": {"store": False}},
}
V2_CASES = [case for case in CORPUS
            if case.method == "POST" and INFER_PATH.fullmatch(case.path) and case.content_type == JSON]


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    with bentoml_serve(mysql_db.env, tmp_path_factory.mktemp("logs")) as running:
        yield running


def both_ways(server: Server, request: dict[str, Any]) -> list[httpx.Response]:
    """The answer through the shortcut, then through the route (an Origin takes it there)."""
    headers = request.get("headers") or {}
    with_origin = ([*headers, ("Origin", "http://a.test")] if isinstance(headers, list)  # a repeated header
                   else {**headers, "Origin": "http://a.test"})
    with server.client() as http:
        return [http.request(**request), http.request(**{**request, "headers": with_origin})]


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body (a request id reduced to its shape) and headers (no date, request ids reduced)."""
    body = re.sub(rb'"request_id":"[0-9a-f]{32}"', b'"request_id":"32 hex"', response.content)
    headers = [(name, "32 hex" if name == "x-request-id" and len(value) == 32 else value)
               for name, value in response.headers.multi_items() if name != "date"]
    return response.status_code, body, headers


@pytest.mark.parametrize("name", list(GOOD))
def test_good_requests_get_the_routes_answer(server: Server, name: str) -> None:
    shortcut, route = both_ways(server, {"method": "POST", "url": V2_INFER, "json": GOOD[name]})
    assert shortcut.status_code == 200
    assert comparable(shortcut) == comparable(route)


def test_a_stored_request_is_recorded_once_either_way(server: Server, mysql_db: MySQLDatabase) -> None:
    shortcut, route = both_ways(server, {"method": "POST", "url": V2_INFER, "json": {"inputs": [tensor()]}})
    assert comparable(shortcut) == comparable(route)
    for answer in (shortcut, route):
        request_id = answer.json()["parameters"]["request_id"]
        with mysql_db.engine().connect() as connection:
            assert connection.scalar(text("SELECT COUNT(*) FROM drybeans WHERE request_id = :id"),
                                     {"id": request_id}) == 1


@pytest.mark.parametrize("case", V2_CASES, ids=[case.name for case in V2_CASES])
def test_refused_requests_get_the_routes_answer(server: Server, case: Any) -> None:
    shortcut, route = both_ways(server, case.request())
    assert shortcut.status_code >= 400
    assert comparable(shortcut) == comparable(route)


def test_the_shortcut_takes_json_infer_requests_only() -> None:
    assert INFER_PATH.fullmatch("/v2/models/drybean_svc/infer")
    assert INFER_PATH.fullmatch("/v2/models/drybean_svc/versions/abc/infer")["version"] == "abc"  # type: ignore[index]
    assert not INFER_PATH.fullmatch("/v2/models/drybean_svc/ready")
    assert not INFER_PATH.fullmatch("/v2/models/a/b/infer")
    assert json.loads(json.dumps(GOOD["features"]))  # the bodies above are plain JSON
