"""The V2 requests the benchmark sends, identical for every server: REST JSON, REST binary and gRPC.

The binary and gRPC requests are built by tritonclient itself (its defaults: binary inputs and outputs over REST,
`raw_input_contents` over gRPC), so that they are byte for byte what its users send.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

MODEL = "drybean_svc"
INPUT = "features"
REST_PATH = f"/v2/models/{MODEL}/infer"
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
BINARY_HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class BinaryBody:
    """A REST request in the binary tensor data extension: the body and the headers that go with it."""

    body: bytes
    headers: dict[str, str]


def json_body(rows: list[list[float]], *, store: bool) -> str:
    """One FP64 tensor `features` [n, 16] as JSON data, with the `store` parameter (MLServer ignores it)."""
    return json.dumps({"parameters": {"store": store},
                       "inputs": [{"name": INPUT, "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                                   "data": [value for row in rows for value in row]}]})


def binary_body(rows: list[list[float]], *, store: bool) -> BinaryBody:
    """The body tritonclient.http sends with its defaults (binary input, all outputs binary), and its header."""
    import tritonclient.http as triton_http
    from tritonclient.http._utils import _get_inference_request

    tensor = triton_http.InferInput(INPUT, [len(rows), len(rows[0])], "FP64")
    tensor.set_data_from_numpy(np.array(rows, dtype=np.float64), binary_data=True)
    body, json_size = _get_inference_request(inputs=[tensor], request_id="", outputs=None, sequence_id=0,
                                             sequence_start=False, sequence_end=False, priority=0, timeout=None,
                                             custom_parameters={"store": store})
    return BinaryBody(body, {BINARY_HEADER: str(json_size)})


def grpc_request(rows: list[list[float]], *, store: bool) -> bytes:
    """A serialized ModelInferRequest as tritonclient.grpc builds it by default: the rows in raw_input_contents.

    Built in a process of its own: tritonclient.grpc registers the protocol's protobuf messages (package `inference`),
    which a process that has imported kserve (the test session) holds already and cannot register twice.
    """
    built = subprocess.run([sys.executable, "-m", "tests.benchmarks.v2_bodies"], input=json.dumps(
        {"rows": rows, "store": store}), capture_output=True, text=True, timeout=120, check=True, cwd=ROOT)
    return bytes.fromhex(built.stdout)


def _build_grpc_request(rows: list[list[float]], store: bool) -> bytes:
    import tritonclient.grpc as triton_grpc
    from tritonclient.grpc._utils import _get_inference_request

    tensor = triton_grpc.InferInput(INPUT, [len(rows), len(rows[0])], "FP64")
    tensor.set_data_from_numpy(np.array(rows, dtype=np.float64))
    request = _get_inference_request(model_name=MODEL, inputs=[tensor], model_version="", request_id="",
                                     outputs=None, sequence_id=0, sequence_start=False, sequence_end=False,
                                     priority=0, timeout=None, parameters={"store": store})
    return bytes(request.SerializeToString())


LABEL_OUTPUTS = ("label", "predict")  # ours; MLServer's sklearn runtime


def json_labels(answer: dict[str, Any]) -> list[str]:
    """The labels of a V2 JSON answer: its output `label` (ours, beside the scores, probabilities and doubts) or
    `predict` (MLServer's sklearn runtime)."""
    found = [output["data"] for output in answer["outputs"] if output["name"] in LABEL_OUTPUTS]
    if len(found) != 1:
        raise ValueError(f"expected one output named label or predict, got "
                         f"{[output['name'] for output in answer['outputs']]}")
    return [str(label) for label in found[0]]


if __name__ == "__main__":  # grpc_request's builder: {"rows": ..., "store": ...} in, the request's bytes in hex out
    given = json.load(sys.stdin)
    print(_build_grpc_request(given["rows"], given["store"]).hex())
