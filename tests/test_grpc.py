"""V2 over gRPC against a real `bentoml serve` with MariaDB, through the clients users run (tests/grpc_clients.py).

The server requires a token for predictions here (DRYBEANS_PROTECT_PREDICT), so the token path is exercised too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from tests.servers import ROOT, MySQLDatabase, Server, bentoml_serve, free_port

pytestmark = pytest.mark.system
TOKEN = "grpc-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, grpc_port: int,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**mysql_db.env, "DRYBEANS_GRPC_PORT": str(grpc_port), "DRYBEANS_API_TOKEN": TOKEN,
           "DRYBEANS_PROTECT_PREDICT": "true"}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def rest_answer(server: Server, holdout: np.ndarray) -> dict[str, Any]:
    """/predict's labels and the REST V2 JSON path's probabilities and scores for the held-out beans."""
    with server.client(headers=AUTH) as http:
        labels = json.loads(http.post("/predict", json={"data": holdout.tolist(), "store": False})
                            .json()["predictions"])
        v2 = http.post("/v2/models/drybean_svc/infer", json={
            "parameters": {"store": False},
            "inputs": [{"name": "features", "shape": list(holdout.shape), "datatype": "FP64",
                        "data": holdout.ravel().tolist()}]}).json()
    outputs = {output["name"]: np.array(output["data"], dtype="<f8") for output in v2["outputs"]
               if output["datatype"] == "FP64"}
    return {"label": labels, "probabilities": outputs["probabilities"].tobytes().hex(),
            "scores": outputs["scores"].tobytes().hex()}


def call(client: str, server_port: int, **request: Any) -> dict[str, Any]:
    """Run one client call in its own process (tests/grpc_clients.py) and return its JSON answer."""
    message = json.dumps({"client": client, "address": f"127.0.0.1:{server_port}", **request})
    result = subprocess.run([sys.executable, "-m", "tests.grpc_clients"], input=message, cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def rows_in_table(db: MySQLDatabase) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans")))


def rows_of(db: MySQLDatabase, request_id: str) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans WHERE request_id = :id"),
                                     {"id": request_id}))


@pytest.mark.parametrize(("client", "options"), [("triton", {}), ("kserve", {}), ("kserve", {"binary": False})],
                         ids=["tritonclient-defaults", "kserve-raw", "kserve-typed-contents"])
def test_clients_get_predict_labels_and_bit_identical_probabilities(
        server: Server, grpc_port: int, holdout: np.ndarray, rest_answer: dict[str, Any], client: str,
        options: dict[str, Any]) -> None:
    answer = call(client, grpc_port, rows=holdout.tolist(), token=TOKEN, store=False, **options)
    assert answer["label"] == rest_answer["label"]
    assert answer["probabilities"] == rest_answer["probabilities"]
    assert answer["scores"] == rest_answer["scores"]


@pytest.mark.parametrize("client", ["triton", "kserve"])
def test_each_prediction_is_stored_exactly_once(server: Server, grpc_port: int, mysql_db: MySQLDatabase,
                                                holdout: np.ndarray, client: str) -> None:
    answer = call(client, grpc_port, rows=holdout[:25].tolist(), token=TOKEN)
    assert answer["parameters"]["stored"] == "committed"
    assert rows_of(mysql_db, answer["parameters"]["request_id"]) == 25


def test_fp32_tensors_are_taken_as_float32(server: Server, grpc_port: int, holdout: np.ndarray) -> None:
    answer = call("triton", grpc_port, rows=holdout[:50].tolist(), datatype="FP32", token=TOKEN, store=False)
    assert len(answer["label"]) == 50


def test_predictions_need_the_token(server: Server, grpc_port: int, holdout: np.ndarray) -> None:
    missing = call("triton", grpc_port, rows=holdout[:1].tolist(), store=False)
    assert missing["status"] == "StatusCode.UNAUTHENTICATED"
    assert "authorization: Bearer" in missing["message"]
    wrong = call("triton", grpc_port, rows=holdout[:1].tolist(), store=False, token="not-the-token")
    assert wrong["status"] == "StatusCode.PERMISSION_DENIED"


def _f64(values: np.ndarray) -> str:
    return np.asarray(values, dtype="<f8").tobytes().hex()


BEAN = [28395, 610.291, 208.1781167, 173.888747, 1.197191424, 0.549812187, 28715, 190.1410973, 0.763922518,
        0.988855999, 0.958027126, 0.913357755, 0.007331506, 0.003147289, 0.834222388, 0.998723889]
BAD_REQUESTS = {
    "raw too short": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 16]}],
                       "raw": [_f64(np.array(BEAN))[:-16]]}, "INVALID_ARGUMENT", "needs 128"),
    "raw too long": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 16]}],
                      "raw": [_f64(np.array(BEAN * 2))]}, "INVALID_ARGUMENT", "needs 128"),
    "raw count": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 16]}],
                   "raw": [_f64(np.array(BEAN)), _f64(np.array(BEAN))]}, "INVALID_ARGUMENT", "one per input"),
    "contents count": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 16], "fp64": BEAN}]},
                       "INVALID_ARGUMENT", "fp64_contents holds 16"),
    "datatype": ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1, 16]}], "raw": ["00" * 16]},
                 "INVALID_ARGUMENT", "FP64 or FP32"),
    "shape": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 15], "fp64": BEAN[:15]}]},
              "INVALID_ARGUMENT", "[n, 16] or [16]"),
    "negative shape": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 16], "fp64": BEAN}]},
                       "INVALID_ARGUMENT", "shape"),
    "ambiguous": ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1, 16], "fp64": BEAN},
                              {"name": "b", "datatype": "FP64", "shape": [1, 16], "fp64": BEAN}]},
                  "INVALID_ARGUMENT", "which one holds the beans"),
    "too many beans": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [10_001, 16]}],
                        "raw": ["00" * 8]}, "INVALID_ARGUMENT", "the limit is 10000"),
    "not finite": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [16], "fp64": [*BEAN[:15], float("nan")]}]},
                   "INVALID_ARGUMENT", "not a finite number"),
    "store not a bool": ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [16], "fp64": BEAN}], "store": "yes"},
                         "INVALID_ARGUMENT", "bool_param"),
    "unknown model": ({"model": "iris", "inputs": [{"name": "x", "datatype": "FP64", "shape": [16], "fp64": BEAN}]},
                      "NOT_FOUND", "serves 'drybean_svc'"),
}


@pytest.fixture(scope="module")
def open_server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[tuple[Server, int]]:
    """A second server, predictions open (no token), for malformed requests sent by raw stubs."""
    port = free_port()
    with bentoml_serve({**mysql_db.env, "DRYBEANS_GRPC_PORT": str(port)}, tmp_path_factory.mktemp("logs")) as running:
        yield running, port


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_status_that_says_what_to_fix_and_store_nothing(
        open_server: tuple[Server, int], mysql_db: MySQLDatabase, case: str) -> None:
    request, status, fragment = BAD_REQUESTS[case]
    before = rows_in_table(mysql_db)
    answer = call("raw", open_server[1], **request)
    assert answer["status"] == f"StatusCode.{status}", answer
    assert fragment in answer["message"]
    assert rows_in_table(mysql_db) == before


def test_health_service_answers_kubernetes_probes(server: Server, grpc_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

