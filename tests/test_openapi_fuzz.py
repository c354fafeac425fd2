"""Schemathesis against the service's own OpenAPI schema (`/docs.json` of a running server).

Every operation gets up to 50 generated valid requests, and those with inputs 50 invalid ones too (derandomised:
the same requests every run); none may get a 5xx, and every 4xx body must be a JSON object with a string `error`.
The server records into its own throwaway database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.servers import MySQLDatabase, Server, bentoml_serve

pytestmark = pytest.mark.system

EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    """A server on the module's throwaway database."""
    env = {**mysql_db.env, "DRYBEANS_SPOOL_DIR": str(tmp_path_factory.mktemp("spool"))}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    """The running server's OpenAPI schema, calling that server."""
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    schema.config.update(base_url=server.url)
    return schema


# Negative cases exist only for operations with a typed body or query (any string is a valid path parameter).
WITH_INPUT = ["POST /predict", "POST /v1/classify", "GET /v1/predictions", "POST /v1/feedback", "GET /v1/quality",
              "GET /v1/drift", "POST /v2/models/{model_name}/infer",
              "POST /v2/models/{model_name}/versions/{model_version}/infer", "GET /v1/models/audit",
              "GET /v1/models/compare", "POST /v1/models/rollback", "POST /v1/models/{version}/shadow",
              "POST /v1/models/{version}/canary", "POST /v1/models/{version}/promote", "POST /v1/models/{version}/idle",
              "POST /v1/photos"]
OPERATIONS = [*WITH_INPUT, "GET /v1/predictions/counts", "GET /v1/model", "GET /v1/models", "GET /livez",
              "GET /readyz", "GET /healthz",
              "GET /metrics", "GET /v2", "GET /v2/health/live", "GET /v2/health/ready", "GET /v2/models/{model_name}",
              "GET /v2/models/{model_name}/ready", "GET /v2/models/{model_name}/versions/{model_version}",
              "GET /v2/models/{model_name}/versions/{model_version}/ready"]
RUNS = [*((label, GenerationMode.POSITIVE) for label in OPERATIONS),
        *((label, GenerationMode.NEGATIVE) for label in WITH_INPUT)]


def client_errors_are_json_objects(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                                   case: schemathesis.Case) -> None:
    """Every 4xx answer is a JSON object with a string `error`."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body


def test_the_schema_lists_exactly_the_fuzzed_operations(api_schema: schemathesis.BaseSchema) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label} {mode.value}" for label, mode in RUNS])
def test_no_operation_answers_5xx_and_every_4xx_is_a_json_object(api_schema: schemathesis.BaseSchema, label: str,
                                                                 mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error, client_errors_are_json_objects])

    call()
