"""V2 over gRPC: the Open Inference Protocol's `inference.GRPCInferenceService`, and `grpc.health.v1` for probes.

Each serving worker runs a `grpc.aio` server on its own event loop, bound to `DRYBEANS_GRPC_PORT` with
SO_REUSEPORT (gRPC's default on Linux), so that connections spread over the workers as HTTP's do. It answers with
the worker's own classifier and recorder, under the REST routes' token and limits. Client mistakes are
INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED or PERMISSION_DENIED with a message saying what to fix.

The stubs in protocol/proto/ are generated from the published proto (docs: protocol/proto/README.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import bentoml
import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api import errors
from api.errors import ApiError, logger
from protocol import arrays, tensors
from protocol.proto import open_inference_grpc_pb2 as pb
from protocol.proto import open_inference_grpc_pb2_grpc as pb_grpc
from protocol.routes import PLATFORM, served_model
from protocol.schemas import MAX_INPUTS, REQUEST_ID, STORE, STORED
from serving.auth import authorize
from serving.client_keys import CLIENT_KEY_HEADER, client_key
from serving.running import RunningService
from serving.token_file import Tokens

SERVICE_NAME = "inference.GRPCInferenceService"
SERVER_NAME = "drybeans"
STATUS_BY_HTTP = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                  403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                  413: grpc.StatusCode.INVALID_ARGUMENT, 415: grpc.StatusCode.INVALID_ARGUMENT,
                  422: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE}


Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def answers_errors(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Turn an ApiError into the matching gRPC status with its message; log a client's mistake in one line."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except ApiError as error:
            errors.log_answer(f"gRPC {handler.__name__}", error)
            await context.abort(STATUS_BY_HTTP.get(error.status, grpc.StatusCode.INTERNAL), error.message)
            raise  # abort raises; this line is never reached

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six V2 calls, on one worker's service instance."""

    def __init__(self, service: RunningService, tokens: Tokens | None, protect_predict: bool) -> None:
        self.service = service
        self._tokens = tokens
        self._protect_predict = protect_predict

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext,
                         ) -> pb.ServerLiveResponse:
        """Live while the worker can record predictions."""
        return pb.ServerLiveResponse(live=self.service.alive())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext,
                          ) -> pb.ServerReadyResponse:
        """Ready as /readyz: the database answers or the spool has room."""
        return pb.ServerReadyResponse(ready=(await self.service.readiness()).ready)

    @answers_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext,
                         ) -> pb.ModelReadyResponse:
        """Ready once the worker serves, when the request names the served model."""
        self._model(request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext,
                             ) -> pb.ServerMetadataResponse:
        """The server's name and the BentoML version serving it."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=bentoml.__version__, extensions=[])

    @answers_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext,
                            ) -> pb.ModelMetadataResponse:
        """The model's inputs and outputs, as the REST metadata lists them."""
        name, version = self._model(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=name, versions=[version] if version else self.service.models.versions, platform=PLATFORM,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in tensors.input_metadata()],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in tensors.output_metadata(self.service.models.get(version) if version
                                                      else self.service.classifier)])

    @answers_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext,
                         ) -> pb.ModelInferResponse:
        """Classify beans, and record them unless the parameter `store` is false."""
        if self._protect_predict:
            self._authorize(context)
        name, version = self._model(request.model_name, request.model_version)
        store = _store(request.parameters)
        names = tensors.requested_outputs(list(request.outputs) or None, tensors.available_outputs(
            self.service.models.get(version) if version else self.service.classifier))
        raw = len(request.raw_input_contents) > 0
        rows = arrays.feature_matrix(input_tensors(request), self.service.max_beans)
        key = client_key(dict(context.invocation_metadata() or ()).get(CLIENT_KEY_HEADER))
        answered = await self.service.score_and_record(rows, store=store, client_key=key, version=version)
        scored, recorded = answered.scored, answered.recorded
        response = pb.ModelInferResponse(model_name=name, model_version=scored.classifier.version, id=request.id)
        response.parameters[REQUEST_ID].string_param = recorded.request_id
        response.parameters[STORED].string_param = recorded.status
        for array in tensors.output_arrays(names, scored.classifier, scored.labels, scored.scores,
                                           answered.assessment):
            _add_output(response, array, raw=raw)
        return response

    def _model(self, name: str, version: str) -> tuple[str, str | None]:
        return served_model(self.service, name, version or None)  # gRPC's empty version: any

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        """A token with the scope predict, as REST's predictions need (UNAUTHENTICATED, PERMISSION_DENIED)."""
        if self._tokens is None:
            return
        metadata = dict(context.invocation_metadata() or ())
        authorize(self._tokens, str(metadata.get("authorization", "")).encode(), "predict",
                  missing=errors.GRPC_AUTHORIZATION_MISSING)


def input_tensors(request: pb.ModelInferRequest) -> list[arrays.Tensor]:
    """The request's inputs, declared for decoding from raw_input_contents (one per input) or typed contents."""
    inputs, raw = request.inputs, request.raw_input_contents
    if len(inputs) > MAX_INPUTS:  # as REST's schema bounds them
        raise errors.InvalidInput(errors.TOO_MANY_INPUTS.format(count=len(inputs), limit=MAX_INPUTS))
    if raw and len(raw) != len(inputs):
        raise errors.InvalidInput(errors.RAW_COUNT.format(count=len(raw), inputs=len(inputs)))
    if raw and any(tensor.HasField("contents") for tensor in inputs):
        raise errors.InvalidInput(errors.RAW_AND_TYPED)
    return [arrays.Tensor(tensor.name, tensor.datatype, tuple(tensor.shape),
                          functools.partial(_from_raw, tensor, raw[index]) if raw
                          else functools.partial(_from_contents, tensor))
            for index, tensor in enumerate(inputs)]


def _from_raw(tensor: pb.ModelInferRequest.InferInputTensor, data: bytes) -> npt.NDArray[np.floating[Any]]:
    expected = math.prod(tensor.shape) * arrays.ITEM_SIZES[tensor.datatype]
    if len(data) != expected:
        raise errors.InvalidInput(errors.RAW_SIZE.format(name=errors.shown(tensor.name), size=len(data),
                                                  shape=list(tensor.shape), datatype=tensor.datatype,
                                                  expected=expected))
    return np.frombuffer(data, dtype=arrays.DTYPES[tensor.datatype])


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> npt.NDArray[np.floating[Any]]:
    field = "fp64_contents" if tensor.datatype == "FP64" else "fp32_contents"
    contents, expected = getattr(tensor.contents, field), math.prod(tensor.shape)
    if len(contents) != expected:
        raise errors.InvalidInput(errors.CONTENTS_SIZE.format(name=errors.shown(tensor.name), field=field,
                                                       count=len(contents), shape=list(tensor.shape),
                                                       expected=expected))
    return np.array(contents, dtype=arrays.DTYPES[tensor.datatype])


def _store(parameters: Any) -> bool:
    if STORE not in parameters:
        return True
    parameter = parameters[STORE]
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise errors.InvalidInput(errors.GRPC_STORE_NOT_BOOLEAN)
    return bool(parameter.bool_param)


def _add_output(response: pb.ModelInferResponse, array: tensors.OutputArray, *, raw: bool) -> None:
    """Append an output: in raw_output_contents when the request sent raw inputs, else as typed contents."""
    output = response.outputs.add(name=array.name, datatype=array.datatype, shape=array.shape)
    if array.columns:
        output.parameters["columns"].string_param = array.columns
    if raw:
        response.raw_output_contents.append(array.raw())
    elif array.datatype == "BYTES":
        output.contents.bytes_contents.extend(array.values)
    elif array.datatype == "BOOL":
        output.contents.bool_contents.extend(array.data())
    else:
        output.contents.fp64_contents.extend(array.data())


class HealthServicer(health_pb2_grpc.HealthServicer):
    """`grpc.health.v1.Health/Check` for Kubernetes' gRPC probes: SERVING while the worker is ready."""

    def __init__(self, service: RunningService) -> None:
        self.service = service

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext,
                    ) -> health_pb2.HealthCheckResponse:
        """The whole server ("") or the inference service by name; NOT_FOUND for any other."""
        if request.service not in ("", SERVICE_NAME):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {errors.shown(request.service)}; "
                                                           f'ask for "" or "{SERVICE_NAME}"')
        ready = (await self.service.readiness()).ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


async def start(service: RunningService, port: int, *, tokens: Tokens | None, protect_predict: bool,
                max_message_bytes: int) -> grpc.aio.Server:
    """Serve V2 and health over gRPC on `port` (all interfaces, shared by the workers) from this worker's loop."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1),
                                      ("grpc.max_receive_message_length", max_message_bytes)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service, tokens, protect_predict), server)
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(service), server)
    server.add_insecure_port(f"[::]:{port}")
    await server.start()
    logger.info("V2 gRPC served on port %d", port)
    return server
