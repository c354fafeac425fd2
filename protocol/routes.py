"""The V2 REST endpoints, on the running service's models and recorder (serving/running.py).

Every failure is `{"error": message, "code": ...}`: 400 for a malformed request (the spec's status), 404 for a
model or version this server does not serve, 413 over the service's per-request bean limit (as its other
endpoints), 415 from the body guard (serving/guard.py) for a body declared as something other than JSON (or, with
binary tensor data, than application/octet-stream). Tritonclient sends no Content-Type: a body without one is read
as JSON, unless it comes from a web page (the guard refuses it when there is an `Origin`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import bentoml
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api import errors, rest_errors
from protocol import binary, tensors
from protocol.schemas import (
    REQUEST_ID,
    STORE,
    STORED,
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from serving.bodies import replay
from serving.client_keys import CLIENT_KEY_HEADER, client_key
from serving.running import RunningService, running_service

SERVER_NAME = "drybeans"
PLATFORM = "sklearn_pickle"  # "<project>_<format>", information only
EXTENSIONS = ("binary_tensor_data",)  # Triton's name for the binary tensor data extension (protocol/binary.py)
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description} for status, description in (
        (400, "a malformed request: the message names the problem"), (404, "no such model or version"),
        (413, "more beans than the service takes in one request"))}


class V2Route(APIRoute):
    """Answer every failure of a V2 route as the protocol's error object, never as FastAPI's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped."""
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            declared = request.headers.get(binary.HEADER)
            if declared is not None:  # binary tensor data: the JSON, then the tensors' bytes
                json_part, request.state.binary = binary.split(await request.body(), declared)
                request = Request(binary.json_scope(request.scope), replay(json_part))
            try:
                return await handler(request)
            except RequestValidationError as invalid:  # answered by the web app's handler for ApiError
                raise errors.InvalidInput(rest_errors.summarise([_named(problem) for problem in invalid.errors()])
                                          ) from None

        return answer


router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"], route_class=V2Route,
                   strict_content_type=False, responses=ERRORS)


def _model(name: str, version: str | None = None) -> tuple[RunningService, str, str | None]:
    """The service, and the model's name and version (None: the roles choose), when the path names a loaded one;
    ModelNotFound otherwise."""
    service = running_service()
    return (service, *served_model(service, name, version))


def served_model(service: RunningService, name: str, version: str | None) -> tuple[str, str | None]:
    """The served model's name, and `version` when it is loaded (None when the path names none: the roles choose
    who answers); ModelNotFound otherwise. Every loaded version can be named (`/versions/{v}/infer`), the
    shadow's and the idle ones' too."""
    served_name = service.classifier.tag.partition(":")[0]
    if name != served_name:
        raise errors.ModelNotFound(errors.V2_UNKNOWN_MODEL.format(name=errors.shown(name), served=served_name))
    if version is not None and version not in service.models.versions:
        raise errors.ModelNotFound(errors.V2_UNKNOWN_VERSION.format(name=name, version=errors.shown(version),
                                                   served=", ".join(service.models.versions)))
    return served_name, version


@router.get("")
async def server_metadata() -> ServerMetadata:
    """Server metadata: its name, the BentoML version serving it, and the protocol extensions it supports."""
    return ServerMetadata(name=SERVER_NAME, version=bentoml.__version__, extensions=list(EXTENSIONS))


@router.get("/health/live", responses={503: {"model": ServerLive}})
async def server_live() -> JSONResponse:
    """Live: this worker can answer and record predictions (503 once it cannot)."""
    alive = running_service().alive()
    return JSONResponse(ServerLive(live=alive).model_dump(), status_code=200 if alive else 503)


@router.get("/health/ready", responses={503: {"model": ServerReady}})
async def server_ready() -> JSONResponse:
    """Ready: the model is loaded and each prediction can be recorded (the database answers, or the spool has
    room); 503 otherwise. The same test as /readyz."""
    report = await running_service().readiness()
    return JSONResponse(ServerReady(live=True, ready=report.ready).model_dump(),
                        status_code=200 if report.ready else 503)


@router.get("/models/{model_name}")
@router.get("/models/{model_name}/versions/{model_version}")
async def model_metadata(model_name: str, model_version: str | None = None) -> ModelMetadata:
    """The model's inputs and outputs (-1: any number of beans).

    Inputs: one tensor `features` [n, 16] (FP64 or FP32; columns in the dataset's order: Area, Perimeter, ...,
    ShapeFactor4), or instead the 16 features as tensors [n] (or [n, 1]) named as the dataset names them.
    Outputs: `label` (BYTES [n]), `scores` and `probabilities` (FP64 [n, 7], columns in alphabetical order of
    the varieties, listed in each tensor's parameter `columns`).
    """
    service, name, version = _model(model_name, model_version)
    return ModelMetadata(name=name, versions=[version] if version else service.models.versions, platform=PLATFORM,
                         inputs=tensors.input_metadata(),
                         outputs=tensors.output_metadata(service.models.get(version) if version
                                                         else service.classifier))


@router.get("/models/{model_name}/ready")
@router.get("/models/{model_name}/versions/{model_version}/ready")
async def model_ready(model_name: str, model_version: str | None = None) -> ModelReady:
    """The model is loaded once the worker serves: always ready when the path names it."""
    _, name, _ = _model(model_name, model_version)
    return ModelReady(name=name, ready=True)


@router.post("/models/{model_name}/infer", response_model=InferenceResponse)
@router.post("/models/{model_name}/versions/{model_version}/infer", response_model=InferenceResponse)
async def infer(request: InferenceRequest, http: Request, model_name: str, model_version: str | None = None,
                ) -> InferenceResponse | Response:
    """Classify beans. Every prediction is recorded, as by /predict, unless the request's parameters say
    `"store": false`; the response's parameters tell the rows' `request_id` and whether they were `stored`
    (committed, spooled or skipped).

    Binary tensor data (Triton's extension, tritonclient's default): with the header `Inference-Header-Content-Length`,
    inputs with the parameter `binary_data_size` take their bytes from after the JSON, and outputs asked with
    `binary_data` (or all, with the request parameter `binary_data_output`) are answered the same way."""
    service, name, version = _model(model_name, model_version)
    content, headers = await answer_inference(service, request, name, version, getattr(http.state, "binary", None),
                                              client_key(http.headers.get(CLIENT_KEY_HEADER)))
    return Response(content, headers=headers, media_type=headers.pop("content-type"))


async def answer_inference(service: RunningService, request: InferenceRequest, name: str, version: str | None,
                           data: memoryview | None = None, key: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Classify (with `version`, or the model the roles choose for `key`), record unless told not to, and answer:
    the body and its headers (content-type included). `data`: the binary part of the body, when it had one. Also
    run by the V2 shortcut (protocol/shortcut.py)."""
    store = (request.parameters or {}).get(STORE, True)
    if not isinstance(store, bool):
        raise errors.InvalidInput(errors.V2_STORE_NOT_BOOLEAN)
    names = tensors.requested_outputs(request.outputs, tensors.available_outputs(
        service.models.get(version) if version else service.classifier))
    as_binary = tensors.binary_outputs(request.outputs, names, request.parameters)
    rows = tensors.feature_matrix(request.inputs, service.max_beans, data)
    answered = await service.score_and_record(rows, store=store, client_key=key, version=version)
    scored, recorded = answered.scored, answered.recorded
    outputs, blobs = tensors.output_tensors(
        tensors.output_arrays(names, scored.classifier, scored.labels, scored.scores, answered.assessment), as_binary)
    answer = InferenceResponse(model_name=name, model_version=scored.classifier.version, id=request.id,
                               parameters={REQUEST_ID: recorded.request_id, STORED: recorded.status}, outputs=outputs)
    # Serialised here, once: FastAPI would validate the model again and encode it through jsonable_encoder.
    content, headers = binary.body(answer.model_dump_json().encode(), blobs)
    return content, {**headers, "content-type": "application/octet-stream" if blobs else "application/json"}


def _named(problem: Mapping[str, Any]) -> Mapping[str, Any]:
    """A validation problem as V2 names it: a body that is not JSON is said so, in so many words."""
    if problem.get("type") != "json_invalid":
        return problem
    return {"msg": errors.V2_BODY_NOT_JSON.format(reason=problem.get("ctx", {}).get("error", "cannot be parsed"))}
