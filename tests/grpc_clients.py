"""Run a real V2 gRPC client, as its users write it, in a process of its own; print what it got as JSON.

    python -m tests.grpc_clients < request.json

tritonclient.grpc and kserve each register the same `inference.*` protobuf messages, which one process cannot hold
twice (and the test process imports kserve), so each client call runs here. The request names the client
("triton" or "kserve"), the address, the model, the rows, and optionally `inputs` (a list of raw tensors, to send
malformed requests), `store`, `token` and `outputs`. The answer holds the labels and the probabilities' and scores'
bytes in hex (compared bit for bit), the response parameters, or the error's gRPC status and message.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def triton(request: dict[str, Any]) -> dict[str, Any]:
    """tritonclient.grpc with its defaults: binary (raw) input and output contents."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(request["address"])
    rows = np.array(request["rows"], dtype=np.float64)
    tensor = grpcclient.InferInput(request.get("name", "input-0"), list(rows.shape), request.get("datatype", "FP64"))
    tensor.set_data_from_numpy(rows.astype(np.float32) if request.get("datatype") == "FP32" else rows)
    headers = {"authorization": f"Bearer {request['token']}"} if request.get("token") else None
    parameters = {"store": request["store"]} if "store" in request else None
    outputs = [grpcclient.InferRequestedOutput(name) for name in request.get("outputs", [])] or None
    try:
        result = client.infer(request.get("model", "drybean_svc"), [tensor], outputs=outputs, headers=headers,
                              parameters=parameters)
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    response = result.get_response()
    answer: dict[str, Any] = {"parameters": {key: value.string_param for key, value in response.parameters.items()}}
    for output in response.outputs:
        array = result.as_numpy(output.name)
        answer[output.name] = ([label.decode() for label in array.tolist()] if output.datatype == "BYTES"
                               else array.astype("<f8").tobytes().hex())
    return answer


def raw(request: dict[str, Any]) -> dict[str, Any]:
    """The generated stubs of tritonclient, for requests no client library would build (malformed on purpose)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(request["address"]))
    message = service_pb2.ModelInferRequest(model_name=request.get("model", "drybean_svc"))
    for tensor in request["inputs"]:
        added = message.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        if "fp64" in tensor:
            added.contents.fp64_contents.extend(tensor["fp64"])
    for blob in request.get("raw", []):
        message.raw_input_contents.append(bytes.fromhex(blob))
    if "store" in request:
        message.parameters["store"].string_param = str(request["store"])
    try:
        stub.ModelInfer(message, timeout=30)
    except grpc.RpcError as error:
        return {"status": str(error.code()), "message": error.details()}
    return {"status": "StatusCode.OK"}


def kserve(request: dict[str, Any]) -> dict[str, Any]:
    """The kserve SDK's InferenceGRPCClient, binary or typed contents."""
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def infer() -> dict[str, Any]:
        client = InferenceGRPCClient(request["address"])
        rows = np.array(request["rows"], dtype=np.float64)
        tensor = InferInput(request.get("name", "predict"), list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=request.get("binary", True))
        headers = [("authorization", f"Bearer {request['token']}")] if request.get("token") else None
        parameters = {"store": request["store"]} if "store" in request else None
        result = await client.infer(InferRequest(model_name="drybean_svc", infer_inputs=[tensor],
                                                 parameters=parameters), headers=headers)
        answer: dict[str, Any] = {"parameters": {key: value.string_param for key, value in
                                                 (result.parameters or {}).items()}}
        for output in result.outputs:
            array = output.as_numpy()
            answer[output.name] = ([label.decode() if isinstance(label, bytes) else label for label in array.tolist()]
                                   if output.datatype == "BYTES" else array.astype("<f8").tobytes().hex())
        await client.close()
        return answer

    return asyncio.run(infer())


if __name__ == "__main__":
    given = json.load(sys.stdin)
    run = {"triton": triton, "kserve": kserve, "raw": raw}[given["client"]]
    print(json.dumps(run(given), default=str))
