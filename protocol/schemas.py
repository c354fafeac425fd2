"""The V2 protocol's JSON objects, as `specification/protocol/inference_rest.md` of kserve/open-inference-protocol
defines them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool, StrictFloat, StrictInt, StrictStr

from api.schemas import EXAMPLE_ROW
from data.schema import FEATURES

# Bounds on what a request may list, checked before any tensor is read: the model takes at most 16 inputs and has 3
# outputs; a few more leave room for a client's extras, and the 17th is refused with a message naming it.
MAX_INPUTS = len(FEATURES) + 4
MAX_OUTPUTS = 8
MAX_PARAMETERS = 16  # per request, per tensor
MAX_DIMENSIONS = 8
MAX_ID = 256  # characters: the id is sent back in the answer
# "$parameter = $string : $string | $number | $boolean"; the server-specific ones this service reads are below.
ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr
Parameters = Annotated[dict[str, ParameterValue], Field(max_length=MAX_PARAMETERS)]
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                   "FP64", "BYTES"]
STORE = "store"  # request parameter: false classifies without recording
REQUEST_ID = "request_id"  # response parameters: as /v1/classify's request_id and stored
STORED = "stored"
EXAMPLE_REQUEST: dict[str, JsonValue] = {
    "id": "42", "inputs": [{"name": "features", "shape": [1, len(FEATURES)], "datatype": "FP64",
                            "data": list[JsonValue](EXAMPLE_ROW)}],
    "outputs": [{"name": "label"}, {"name": "probabilities"}]}  # OpenAPI 3.0 form of an example


class MetadataTensor(BaseModel):
    """An input or output of the model: -1 marks the batch dimension."""

    name: str
    datatype: Datatype
    shape: list[int]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str] = Field(description="protocol extensions supported: binary_tensor_data")


class ModelMetadata(BaseModel):
    """`GET /v2/models/{name}[/versions/{version}]`."""

    name: str
    versions: list[str] = Field(description="the model store version of the served model")
    platform: str = Field(description="information only: scikit-learn pipeline, pickled")
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerLive(BaseModel):
    """`GET /v2/health/live`."""

    live: bool


class ServerReady(BaseModel):
    """`GET /v2/health/ready`: the spec's text names the field `live`, its clients (KServe's) read `ready`: both."""

    live: bool
    ready: bool


class ModelReady(BaseModel):
    """`GET /v2/models/{name}[/versions/{version}]/ready`."""

    name: str
    ready: bool


class RequestInput(BaseModel):
    """One input tensor: `data` in row-major order, flat or nested as `shape`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description='"features" for one [n,16] tensor, or a feature name for a [n] (or [n,1]) '
                                  "tensor of that feature", examples=["features"])
    shape: list[int] = Field(max_length=MAX_DIMENSIONS, description="dimensions, each >= 0",
                             examples=[[1, len(FEATURES)]])
    datatype: str = Field(description="FP64 or FP32", examples=["FP64"])
    parameters: Parameters | None = None
    data: list[Any] | None = Field(None, description="the tensor's elements, row-major: flat, or nested as the "
                                   "shape; absent when they follow the JSON as binary data (parameter "
                                   "binary_data_size)", examples=[EXAMPLE_ROW])


class RequestOutput(BaseModel):
    """An output the client wants back."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["label"])
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """`POST /v2/models/{name}[/versions/{version}]/infer`."""

    # Other top-level keys are ignored: KServe's SDK sends "model_name" (and "model_version") in the body too.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": EXAMPLE_REQUEST})

    id: str | None = Field(None, max_length=MAX_ID, description="returned in the response")
    parameters: Parameters | None = Field(None, description='"store": false classifies without recording')
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_INPUTS)
    outputs: list[RequestOutput] | None = Field(None, max_length=MAX_OUTPUTS, description="which outputs to return "
                                                "(default: all): label, scores, probabilities")


class ResponseOutput(BaseModel):
    """One output tensor, data flat in row-major order; or, as binary data, its byte count in `binary_data_size`."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = Field(None, exclude_if=lambda value: value is None)
    data: list[Any] | None = Field(None, exclude_if=lambda value: value is None)


class InferenceResponse(BaseModel):
    """The answer to an inference request."""

    model_name: str
    model_version: str
    id: str | None = Field(None, exclude_if=lambda value: value is None, description="the request's id")
    parameters: Parameters = Field(description="request_id: the rows' request_id in table drybeans (empty when "
                                               "not stored); stored: committed, spooled or skipped")
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    """Every failed V2 request: a message naming the problem (and the service's error code)."""

    error: str
    code: str
