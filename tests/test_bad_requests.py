"""The malformed-request corpus (tests/bad_requests.py) against real servers recording into MySQL.

Each case is sent once (module fixtures); each must get its 4xx as a JSON object whose `error` names the problem,
store nothing, and leave no traceback in the log; the servers stay healthy afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, text

from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from tests.bad_requests import CORPUS, DEFAULT_MAX_BEANS, JSON, LIMITED_ENV, OVER_LIMITS, BadRequest
from tests.servers import MySQLDatabase, Server, bentoml_serve
from tests.support import MAX_ERROR_BODY

pytestmark = pytest.mark.system

SERVER_ERRORS = re.compile(r"Traceback|\[ERROR\]")


@dataclass(frozen=True)
class Answer:
    """What the service answered to one case, and how many rows the table gained meanwhile."""

    status: int
    text: str
    rows_added: int

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.text)


def serve(mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
          **env: str) -> AbstractContextManager[Server]:
    """`bentoml serve` on the module's database with its own spool directory."""
    spool = tmp_path_factory.mktemp("spool")
    return bentoml_serve({**mysql_db.env, "DRYBEANS_SPOOL_DIR": str(spool), **env}, tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    """A server with the default limits."""
    with serve(mysql_db, tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def limited_server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[Server]:
    """A server taking at most 4,096 bytes and 3 beans per request."""
    with serve(mysql_db, tmp_path_factory, **LIMITED_ENV) as running:
        yield running


def row_count(db: MySQLDatabase) -> int:
    """Rows in the predictions table."""
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans")))


def answer_all(server: Server, db: MySQLDatabase, cases: list[BadRequest]) -> dict[str, Answer]:
    """Send every case once; note each answer and the rows added while it was answered."""
    answers = {}
    for case in cases:
        before = row_count(db)
        with server.client() as http:  # a fresh connection: no answer depends on an earlier one
            response = http.request(**case.request())
        answers[case.name] = Answer(response.status_code, response.text, row_count(db) - before)
    return answers


@pytest.fixture(scope="module")
def seeded_ids(server: Server, mysql_db: MySQLDatabase) -> list[int]:
    """Ids of predictions stored before any malformed request."""
    body = httpx.post(f"{server.url}/v1/classify", json={"beans": [EXAMPLE_BEAN] * 2}).json()
    return [prediction["record_id"] for prediction in body["predictions"]]


@pytest.fixture(scope="module")
def corpus_answers(server: Server, mysql_db: MySQLDatabase, seeded_ids: list[int]) -> dict[str, Answer]:
    """The default server's answers to the corpus."""
    return answer_all(server, mysql_db, CORPUS)


@pytest.fixture(scope="module")
def over_limit_answers(limited_server: Server, mysql_db: MySQLDatabase) -> dict[str, Answer]:
    """The limited server's answers to the over-the-limit cases."""
    return answer_all(limited_server, mysql_db, OVER_LIMITS)


def assert_refused(case: BadRequest, answer: Answer) -> None:
    """The answer is the case's status, a small JSON error object naming the problem, and nothing was stored."""
    assert answer.status == case.status, answer.text[:500]
    assert len(answer.text) < MAX_ERROR_BODY, f"{len(answer.text)} characters of error"
    body = answer.json()
    assert isinstance(body, dict) and set(body) <= {"error", "code", "detail"}, body
    assert isinstance(body["code"], str) and isinstance(body["error"], str)
    assert case.says in body["error"], body["error"][:500]
    assert answer.rows_added == 0


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_malformed_request_is_refused_with_a_json_error_naming_the_problem(
        corpus_answers: dict[str, Answer], case: BadRequest) -> None:
    assert_refused(case, corpus_answers[case.name])


@pytest.mark.parametrize("case", OVER_LIMITS, ids=[case.name for case in OVER_LIMITS])
def test_request_over_a_configured_limit_gets_413_naming_the_limit(
        over_limit_answers: dict[str, Answer], case: BadRequest) -> None:
    assert_refused(case, over_limit_answers[case.name])


def test_the_corpus_leaves_no_server_error_in_the_log_and_the_service_healthy(
        server: Server, mysql_db: MySQLDatabase, corpus_answers: dict[str, Answer]) -> None:
    assert_healthy_after(server, mysql_db)


def test_the_limits_leave_no_server_error_in_the_log_and_the_service_healthy(
        limited_server: Server, mysql_db: MySQLDatabase, over_limit_answers: dict[str, Answer]) -> None:
    assert_healthy_after(limited_server, mysql_db)


def assert_healthy_after(server: Server, db: MySQLDatabase) -> None:
    """No traceback or ERROR line in the log, ready, and a good request is classified and stored."""
    errors = [line for line in server.output().splitlines() if SERVER_ERRORS.search(line)]
    assert errors == []
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    before = row_count(db)
    response = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW]})
    assert response.json() == {"predictions": '["DERMASON"]'}
    assert row_count(db) == before + 1


def test_sql_in_values_names_and_filters_leaves_the_table_and_its_rows(
        mysql_db: MySQLDatabase, corpus_answers: dict[str, Answer], seeded_ids: list[int]) -> None:
    sql_cases = {"sql-as-value", "sql-as-data", "sql-as-field-name", "sql-as-variety", "sql-as-limit"}
    assert sql_cases <= corpus_answers.keys()
    with mysql_db.engine().connect() as connection:
        assert connection.scalar(text("SHOW TABLES LIKE 'drybeans'")) == "drybeans"
        kept = connection.scalars(text("SELECT id FROM drybeans WHERE id IN :ids")
                                  .bindparams(bindparam("ids", expanding=True)), {"ids": seeded_ids}).all()
    assert sorted(kept) == sorted(seeded_ids)


def test_the_default_limit_takes_10000_beans_and_stores_them(server: Server, mysql_db: MySQLDatabase) -> None:
    before = row_count(mysql_db)
    response = httpx.post(f"{server.url}/predict", json={"data": [EXAMPLE_ROW] * DEFAULT_MAX_BEANS}, timeout=120)
    assert response.status_code == 200
    assert json.loads(response.json()["predictions"]) == ["DERMASON"] * DEFAULT_MAX_BEANS
    assert row_count(mysql_db) == before + DEFAULT_MAX_BEANS


def test_a_chunked_body_under_the_limit_is_read_whole(limited_server: Server) -> None:
    body = json.dumps({"data": [EXAMPLE_ROW] * 3, "store": False}).encode()
    with limited_server.client() as http:
        response = http.post("/predict", content=iter([body[:100], body[100:]]), headers={"Content-Type": JSON})
    assert response.json() == {"predictions": json.dumps(["DERMASON"] * 3)}


def test_json_with_a_charset_is_still_json(server: Server) -> None:
    body = json.dumps({"data": [EXAMPLE_ROW], "store": False})
    response = httpx.post(f"{server.url}/predict", content=body,
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.json() == {"predictions": '["DERMASON"]'}
