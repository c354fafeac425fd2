"""The V2 endpoints through real third-party clients (Triton's and KServe's) against a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from sqlalchemy import text
from tritonclient.utils import InferenceServerException

from data.schema import CLASSES, FEATURES
from tests.servers import MySQLDatabase, Server, bentoml_serve

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    with bentoml_serve(mysql_db.env, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def predict_labels(server: Server, holdout: np.ndarray) -> list[str]:
    """/predict's labels for the held-out set."""
    with server.client() as http:
        response = http.post("/predict", json={"data": holdout.tolist(), "store": False})
    return json.loads(response.json()["predictions"])


@pytest.fixture(scope="module")
def version(server: Server) -> str:
    with server.client() as http:
        return http.get("/v2/models/drybean_svc").json()["versions"][0]


def rows_in_table(db: MySQLDatabase) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans")))


def triton_client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)


def test_tritonclient_health_and_metadata(server: Server, version: str) -> None:
    client = triton_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("drybean_svc") and client.is_model_ready("drybean_svc", version)
    assert not client.is_model_ready("iris")
    assert client.get_server_metadata() == {"name": "drybeans", "version": client.get_server_metadata()["version"],
                                            "extensions": ["binary_tensor_data"]}
    metadata = client.get_model_metadata("drybean_svc", version)
    assert metadata["name"] == "drybean_svc" and metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 16]}]
    assert metadata["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                                   {"name": "scores", "datatype": "FP64", "shape": [-1, 7]},
                                   {"name": "probabilities", "datatype": "FP64", "shape": [-1, 7]},
                                   {"name": "prediction_set", "datatype": "BYTES", "shape": [-1]},
                                   {"name": "needs_review", "datatype": "BOOL", "shape": [-1]},
                                   {"name": "consistent", "datatype": "BOOL", "shape": [-1]},
                                   {"name": "in_distribution", "datatype": "BOOL", "shape": [-1]}]


def test_tritonclient_infer_labels_equal_predicts_for_the_whole_holdout(
        server: Server, holdout: np.ndarray, predict_labels: list[str], version: str) -> None:
    features = triton.InferInput("features", list(holdout.shape), "FP64")
    features.set_data_from_numpy(holdout, binary_data=False)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("label", "probabilities")]
    result = triton_client(server).infer("drybean_svc", [features], model_version=version, outputs=outputs,
                                         request_id="holdout", parameters={"store": False})
    labels = result.as_numpy("label").astype(str)
    assert len(labels) == 4084 and labels.tolist() == predict_labels
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (4084, 7) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert result.get_output("scores") is None  # only what was asked
    response = result.get_response()
    assert response["id"] == "holdout" and response["model_version"] == version
    assert response["parameters"] == {"request_id": "", "stored": "skipped"}
    most_probable = np.asarray(CLASSES)[probabilities.argmax(axis=1)]
    assert (most_probable != labels).sum() <= 5  # differs only on vote ties (calibration.py)


def test_tritonclient_sixteen_fp32_tensors_and_recording(server: Server, holdout: np.ndarray,
                                                         predict_labels: list[str], mysql_db: MySQLDatabase) -> None:
    rows = holdout[:50].astype(np.float32)
    inputs = []
    for i, name in enumerate(FEATURES):
        tensor = triton.InferInput(name, [len(rows)], "FP32")
        tensor.set_data_from_numpy(rows[:, i], binary_data=False)
        inputs.append(tensor)
    before = rows_in_table(mysql_db)
    result = triton_client(server).infer("drybean_svc", inputs, outputs=[
        triton.InferRequestedOutput("label", binary_data=False)])
    assert result.as_numpy("label").astype(str).tolist() == [  # float32 beans: compare with /predict on them
        *json.loads(server.client().post("/predict", json={"data": rows.astype(np.float64).tolist(),
                                                           "store": False}).json()["predictions"])]
    parameters = result.get_response()["parameters"]
    assert parameters["stored"] == "committed" and len(parameters["request_id"]) == 32
    assert rows_in_table(mysql_db) == before + 50
    with mysql_db.engine().connect() as connection:
        stored = connection.scalars(text("SELECT name FROM drybeans WHERE request_id = :id ORDER BY bean_index"),
                                    {"id": parameters["request_id"]}).all()
    assert stored == result.as_numpy("label").astype(str).tolist()


def test_tritonclient_sees_the_errors(server: Server, holdout: np.ndarray) -> None:
    client = triton_client(server)
    features = triton.InferInput("features", [2, 16], "FP64")
    features.set_data_from_numpy(holdout[:2], binary_data=False)
    with pytest.raises(InferenceServerException, match="unknown model 'iris'") as caught:
        client.infer("iris", [features])
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException, match="unknown output 'proba'") as caught:
        client.infer("drybean_svc", [features], outputs=[triton.InferRequestedOutput("proba", binary_data=False)])
    assert caught.value.status() == "400"


@pytest.fixture(scope="module")
def json_outputs(server: Server, holdout: np.ndarray) -> dict[str, bytes]:
    """The REST JSON path's scores and probabilities for the held-out beans, as float64 bytes."""
    with server.client() as http:
        answer = http.post("/v2/models/drybean_svc/infer", json={
            "parameters": {"store": False},
            "inputs": [{"name": "features", "shape": list(holdout.shape), "datatype": "FP64",
                        "data": holdout.ravel().tolist()}]}).json()
    return {output["name"]: np.array(output["data"], dtype="<f8").tobytes() for output in answer["outputs"]
            if output["datatype"] == "FP64"}


def test_tritonclient_with_its_defaults_gets_predicts_labels_and_the_json_paths_numbers(
        server: Server, holdout: np.ndarray, predict_labels: list[str], json_outputs: dict[str, bytes]) -> None:
    """Binary tensor data both ways, as tritonclient sends it unless told otherwise; any input name."""
    features = triton.InferInput("input-0", list(holdout.shape), "FP64")
    features.set_data_from_numpy(holdout)
    result = triton_client(server).infer("drybean_svc", [features], parameters={"store": False})
    assert result.as_numpy("label").astype(str).tolist() == predict_labels
    assert result.as_numpy("probabilities").astype("<f8").tobytes() == json_outputs["probabilities"]
    assert result.as_numpy("scores").astype("<f8").tobytes() == json_outputs["scores"]
    assert all("binary_data_size" in output["parameters"] for output in result.get_response()["outputs"])


def test_binary_predictions_are_stored_exactly_once(server: Server, holdout: np.ndarray,
                                                     mysql_db: MySQLDatabase) -> None:
    features = triton.InferInput("features", [30, 16], "FP64")
    features.set_data_from_numpy(holdout[:30])
    before = rows_in_table(mysql_db)
    result = triton_client(server).infer("drybean_svc", [features], outputs=[triton.InferRequestedOutput("label")])
    parameters = result.get_response()["parameters"]
    assert parameters["stored"] == "committed"
    assert rows_in_table(mysql_db) == before + 30
    with mysql_db.engine().connect() as connection:
        stored = connection.scalars(text("SELECT name FROM drybeans WHERE request_id = :id ORDER BY bean_index"),
                                    {"id": parameters["request_id"]}).all()
    assert stored == result.as_numpy("label").astype(str).tolist()


def test_a_request_written_for_mlservers_sklearn_runtime_is_answered(server: Server, holdout: np.ndarray,
                                                                      predict_labels: list[str]) -> None:
    """As MLServer 1.7 takes it: one tensor named input-0 (here all 4,084 held-out beans, and the issue's verbatim
    one-bean request)."""
    verbatim = {"inputs": [{"name": "input-0", "shape": [1, 16], "datatype": "FP64",
                            "data": [33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, 207.93, 0.82, 0.99, 0.93,
                                     0.82, 0.01, 0.0, 0.67, 1.0]}]}
    every_bean = {"inputs": [{"name": "input-0", "shape": list(holdout.shape), "datatype": "FP64",
                              "data": holdout.ravel().tolist()}], "parameters": {"store": False}}
    with server.client() as http:
        one, answer = http.post("/v2/models/drybean_svc/infer", json=verbatim), http.post(
            "/v2/models/drybean_svc/infer", json=every_bean)
    assert one.status_code == 200 and one.json()["outputs"][0]["data"] == ["DERMASON"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == predict_labels


def test_kserve_rest_client_sends_binary_tensors(server: Server, holdout: np.ndarray,
                                                  predict_labels: list[str]) -> None:
    async def infer() -> list[str]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
        try:
            features = InferInput("predict", list(holdout.shape), "FP64")
            features.set_data_from_numpy(holdout)  # binary_data=True, the SDK's default
            request = InferRequest(model_name="drybean_svc", infer_inputs=[features], parameters={"store": False})
            response = await client.infer(server.url, request, model_name="drybean_svc")
            return [str(label) for label in response.outputs[0].as_numpy().astype(str).tolist()]
        finally:
            await client.close()

    assert asyncio.run(infer()) == predict_labels


def test_kserve_rest_client_health_metadata_and_infer(server: Server, holdout: np.ndarray,
                                                      predict_labels: list[str]) -> None:
    async def session() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
        try:
            assert await client.is_server_live(server.url) and await client.is_server_ready(server.url)
            assert await client.is_model_ready(server.url, "drybean_svc")
            assert not await client.is_model_ready(server.url, "iris")
            features = InferInput("features", list(holdout.shape), "FP64")
            features.set_data_from_numpy(holdout, binary_data=False)
            request = InferRequest(model_name="drybean_svc", infer_inputs=[features], request_id="k1",
                                   parameters={"store": False})
            response = await client.infer(server.url, request, model_name="drybean_svc")
            assert response.id == "k1" and [o.name for o in response.outputs] == [
                "label", "scores", "probabilities", "prediction_set", "needs_review", "consistent", "in_distribution"]
            assert response.outputs[0].as_numpy().astype(str).tolist() == predict_labels
            assert response.outputs[1].as_numpy().shape == (4084, 7)
            sets, review, consistent = (response.outputs[i].as_numpy() for i in (3, 4, 5))
            assert review.dtype == bool and consistent.all()  # the SDK reads the doubts as any other output
            assert all(label in str(members).split(",") or review[i]
                       for i, (label, members) in enumerate(zip(predict_labels, sets.astype(str), strict=True)))
        finally:
            await client.close()

    asyncio.run(session())
    # The SDK's REST client has no metadata call: read it as a KServe user would, over plain HTTP.
    with server.client() as http:
        assert http.get("/v2/models/drybean_svc").json()["inputs"][0]["shape"] == [-1, 16]
