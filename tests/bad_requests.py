"""The malformed-request corpus: each case is one request the service must refuse, and what its answer must say.

`CORPUS` goes to a server with the default limits (10,000 beans, 16 MiB); `OVER_LIMITS` to one started with
`LIMITED_ENV` (4,096 bytes, 3 beans). `says` must appear in the answer's `error` text.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from api import errors
from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW
from data.schema import CLASSES, FEATURES

JSON = "application/json"  # also what a refused Content-Type answer must name
SQL = "'; DROP TABLE drybeans; --"
LIMITED_ENV = {"DRYBEANS_MAX_BODY_BYTES": "4096", "DRYBEANS_MAX_BEANS_PER_REQUEST": "3"}
DEFAULT_MAX_BEANS = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
MULTIPART_BOUNDARY = "drybeans-corpus-boundary"
NAMES = ", ".join(FEATURES)


@dataclass(frozen=True)
class BadRequest:
    """One malformed request: sent as given, it must be answered `status` with `says` in the error text."""

    name: str
    method: str
    path: str
    status: int
    says: str
    body: bytes = b""
    content_type: str | None = JSON  # None: no Content-Type header at all
    params: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send the body with Transfer-Encoding: chunked and no Content-Length
    headers: tuple[tuple[str, str], ...] = ()  # more headers, sent after the Content-Type (repeating it, say)

    def request(self) -> dict[str, Any]:
        """The arguments of `httpx.Client.request` that send this case."""
        content = iter([self.body[:1000], self.body[1000:]]) if self.chunked else self.body
        headers = [("Content-Type", self.content_type)] if self.content_type else []
        headers += self.headers
        return {"method": self.method, "url": self.path, "params": self.params,
                # a dict when every name is one header (callers add to it); pairs when a name repeats
                "headers": dict(headers) if len(dict(headers)) == len(headers) else headers,
                "content": content if self.body else None}


def as_json(value: object) -> bytes:
    """A JSON body."""
    return json.dumps(value).encode()


def rows_text(first: str, count: int = 16) -> str:
    """One row, as JSON text, whose first value is written verbatim (`NaN`, `1e400`, ...) and the rest are 1.0."""
    return "[[" + ", ".join([first, *["1.0"] * (count - 1)]) + "]]"


def nested(depth: int) -> str:
    """Arrays nested `depth` deep."""
    return "[" * depth + "]" * depth


def multipart(fields: dict[str, str]) -> bytes:
    """A multipart/form-data body with MULTIPART_BOUNDARY."""
    parts = [f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             for name, value in fields.items()]
    return ("".join(parts) + f"--{MULTIPART_BOUNDARY}--\r\n").encode()


def post(name: str, path: str, status: int, says: str, body: bytes, content_type: str | None = JSON,
         *, chunked: bool = False, headers: tuple[tuple[str, str], ...] = ()) -> BadRequest:
    """A POST case."""
    return BadRequest(name, "POST", path, status, says, body, content_type, chunked=chunked, headers=headers)


def query(name: str, says: str, **params: str) -> BadRequest:
    """A GET /v1/predictions case with bad query parameters (FastAPI answers 422)."""
    return BadRequest(name, "GET", "/v1/predictions", 422, says, content_type=None, params=params)


def bean_with_area(literal: str) -> bytes:
    """A /v1/classify body with the example bean, its Area written verbatim (`NaN`, `1e400`, ...)."""
    return json.dumps({"beans": [{**EXAMPLE_BEAN, "Area": "@"}]}).replace('"@"', literal).encode()


def beans_body(count: int) -> bytes:
    """A /v1/classify body with `count` copies of the example bean."""
    return as_json({"beans": [EXAMPLE_BEAN] * count})


def v2_body(shape: list[int] | None = None, data: list[Any] | None = None, datatype: str = "FP64",
            **fields: Any) -> bytes:
    """A V2 inference request with one "features" tensor (the example bean unless told), store false."""
    tensor = {"name": "features", "shape": shape or [1, 16], "datatype": datatype,
              "data": EXAMPLE_ROW if data is None else data}
    return as_json({"inputs": [tensor], "parameters": {"store": False}, **fields})


V2_INFER = "/v2/models/drybean_svc/infer"
BEAN_BYTES = struct.pack("<16d", *EXAMPLE_ROW)  # the example bean as FP64 binary tensor data


def binary_post(name: str, status: int, says: str, *, binary_bytes: bytes = BEAN_BYTES, size: int | None = None,
                header: str | None = "", datatype: str = "FP64", shape: list[int] | None = None,
                data: list[Any] | None = None, outputs: list[dict[str, Any]] | None = None) -> BadRequest:
    """A V2 request with binary tensor data as tritonclient sends it (no Content-Type), made wrong as told: `header`
    replaces the JSON's length in Inference-Header-Content-Length (None: no header), `size` its binary_data_size."""
    tensor: dict[str, Any] = {"name": "features", "shape": shape or [1, 16], "datatype": datatype,
                              "parameters": {"binary_data_size": len(binary_bytes) if size is None else size}}
    if data is not None:
        tensor["data"] = data
    request: dict[str, Any] = {"inputs": [tensor]}  # stored, were it taken: the corpus checks nothing was
    if outputs is not None:
        request["outputs"] = outputs
    json_part = as_json(request)
    headers = () if header is None else (("Inference-Header-Content-Length", header or str(len(json_part))),)
    return post(name, V2_INFER, status, says, json_part + binary_bytes, None, headers=headers)
GOOD_DATA = json.dumps([EXAMPLE_ROW])  # a valid tutorial `data` string: only the envelope is wrong below
NOT_JSON = errors.DATA_NOT_JSON.split(" (")[0]  # "data is not valid JSON"
LONG = "x" * 100_000  # a client's text that no answer may echo whole

CORPUS: list[BadRequest] = [
    # Broken JSON bodies
    post("truncated-json", "/predict", 400, "Invalid JSON", b'{"data": [[1,'),
    post("classify-truncated-json", "/v1/classify", 400, "Invalid JSON", b'{"beans": ['),
    post("single-quoted-json", "/predict", 400, "Invalid JSON", b"{'data': [[1.0]]}"),
    post("trailing-garbage", "/predict", 400, "Invalid JSON", as_json({"data": GOOD_DATA}) + b" trailing"),
    post("invalid-utf8", "/predict", 400, "Invalid JSON", b'{"data": "\xff\xfe"}'),
    post("empty-body", "/predict", 400, "data: Field required", b""),
    post("body-is-null", "/predict", 400, "Input should be an object", b"null"),
    post("classify-body-is-array", "/v1/classify", 400, "Input should be an object", as_json([EXAMPLE_BEAN])),
    # A valid body under a Content-Type that is not JSON
    post("text-plain", "/predict", 415, JSON, as_json({"data": GOOD_DATA}), "text/plain"),
    post("form-urlencoded", "/predict", 415, JSON, urlencode({"data": GOOD_DATA}).encode(),
         "application/x-www-form-urlencoded"),
    post("multipart", "/predict", 415, JSON, multipart({"data": GOOD_DATA}),
         f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"),
    post("no-content-type", "/predict", 415, JSON, as_json({"data": GOOD_DATA}), None),
    post("classify-text-plain", "/v1/classify", 415, JSON, beans_body(1), "text/plain"),
    # Wrong number of features
    post("15-features-in-string", "/predict", 400, errors.WRONG_FEATURE_COUNT.format(row=1, count=15, names=NAMES),
         as_json({"data": json.dumps([EXAMPLE_ROW[:15]])})),
    post("17-features-in-array", "/predict", 400, "row 1 has 17 features", as_json({"data": [[*EXAMPLE_ROW, 1.0]]})),
    post("second-row-short", "/predict", 400, "row 2 has 15 features",
         as_json({"data": [EXAMPLE_ROW, EXAMPLE_ROW[:15]]})),
    post("empty-row", "/predict", 400, "row 1 has 0 features", as_json({"data": [[]]})),
    post("classify-15-features", "/v1/classify", 400, "beans.0.ShapeFactor4: Field required",
         as_json({"beans": [{k: v for k, v in EXAMPLE_BEAN.items() if k != "ShapeFactor4"}]})),
    post("classify-17-features", "/v1/classify", 400, "beans.0.ShapeFactor5: Extra inputs are not permitted",
         as_json({"beans": [{**EXAMPLE_BEAN, "ShapeFactor5": 1.0}]})),
    # Strings and nulls where numbers belong
    post("string-value", "/predict", 400, errors.NOT_A_NUMBER.format(row=1, feature="Area", value='"abc"'),
         as_json({"data": [["abc", *EXAMPLE_ROW[1:]]]})),
    post("numeric-string-value", "/predict", 400, 'feature Area: "33958" is not a number',
         as_json({"data": [["33958", *EXAMPLE_ROW[1:]]]})),
    post("null-in-string", "/predict", 400, "feature Perimeter: null is not a number",
         as_json({"data": json.dumps([[EXAMPLE_ROW[0], None, *EXAMPLE_ROW[2:]]])})),
    post("data-is-null", "/predict", 400, "data.list[any]: Input should be a valid array", as_json({"data": None})),
    post("store-is-null", "/predict", 400, "store: Input should be a valid boolean",
         as_json({"data": [EXAMPLE_ROW], "store": None})),
    post("classify-null-feature", "/v1/classify", 400, "beans.0.Area: Input should be a valid number",
         as_json({"beans": [{**EXAMPLE_BEAN, "Area": None}]})),
    post("classify-beans-null", "/v1/classify", 400, "beans: Input should be a valid array",
         as_json({"beans": None})),
    # NaN and Infinity: raw literals in the body (not JSON, but Python's parsers take them), and in the string
    post("raw-nan", "/predict", 400, errors.NOT_FINITE.format(row=1, feature="Area", value="nan"),
         f'{{"data": {rows_text("NaN")}}}'.encode()),
    post("raw-infinity", "/predict", 400, "feature Area: inf is not a finite number",
         f'{{"data": {rows_text("Infinity")}}}'.encode()),
    post("raw-minus-infinity", "/predict", 400, "feature Area: -inf is not a finite number",
         f'{{"data": {rows_text("-Infinity")}}}'.encode()),
    post("nan-in-string", "/predict", 400, "NaN is not a number JSON allows", as_json({"data": rows_text("NaN")})),
    post("infinity-in-string", "/predict", 400, "-Infinity is not a number JSON allows",
         as_json({"data": rows_text("-Infinity")})),
    post("classify-raw-nan", "/v1/classify", 400, "beans.0.Area: Input should be a finite number",
         bean_with_area("NaN")),
    post("classify-raw-infinity", "/v1/classify", 400, "beans.0.Area: Input should be a finite number",
         bean_with_area("Infinity")),
    # Numbers beyond float64
    post("raw-1e400", "/predict", 400, "feature Area: inf is not a finite number",
         f'{{"data": {rows_text("1e400")}}}'.encode()),
    post("raw-10-to-the-400", "/predict", 400, f"feature Area: {errors.clipped(str(10**400))} is not a finite number",
         f'{{"data": {rows_text(str(10**400))}}}'.encode()),
    post("1e400-in-string", "/predict", 400, "feature Area: inf is not a finite number",
         as_json({"data": rows_text("1e400")})),
    post("10-to-the-400-in-string", "/predict", 400, "is not a finite number",
         as_json({"data": rows_text(str(10**400))})),
    post("5000-digit-integer-in-string", "/predict", 400, NOT_JSON, as_json({"data": rows_text("9" * 5000)})),
    post("classify-1e400", "/v1/classify", 400, "beans.0.Area: Input should be a finite number",
         bean_with_area("1e400")),
    post("classify-10-to-the-400", "/v1/classify", 400, "beans.0.Area: Input should be a finite number",
         bean_with_area(str(10**400))),
    # Finite, but so large that scaling the feature overflows float64
    post("1e306-shape-factor", "/predict", 400, "ShapeFactor1",
         as_json({"data": [[*EXAMPLE_ROW[:12], 1e306, *EXAMPLE_ROW[13:]]]})),
    post("classify-1e306-shape-factor", "/v1/classify", 400, "ShapeFactor1",
         as_json({"beans": [{**EXAMPLE_BEAN, "ShapeFactor1": 1e306}]})),
    # Nothing to classify
    post("empty-list", "/predict", 400, errors.NO_BEANS, as_json({"data": []})),
    post("empty-list-in-string", "/predict", 400, errors.NO_BEANS, as_json({"data": "[]"})),
    post("classify-no-beans", "/v1/classify", 400, "beans: List should have at least 1 item", as_json({"beans": []})),
    # Nesting too deep
    post("nested-10000-in-body", "/predict", 400, "Invalid JSON: recursion limit exceeded",
         f'{{"data": {nested(10_000)}}}'.encode()),
    post("nested-10000-in-string", "/predict", 400, "recursion", as_json({"data": nested(10_000)})),
    post("classify-nested-10000", "/v1/classify", 400, "Invalid JSON: recursion limit exceeded",
         f'{{"beans": {nested(10_000)}}}'.encode()),
    post("rows-nested-one-level-too-deep", "/predict", 400, "row 1 has 1 features",
         as_json({"data": [[EXAMPLE_ROW]]})),
    # A data string that is not JSON rows
    post("data-string-not-json", "/predict", 400, NOT_JSON, as_json({"data": "33958.0, 677.1"})),
    post("data-string-empty", "/predict", 400, NOT_JSON, as_json({"data": ""})),
    post("data-string-is-object", "/predict", 400, errors.DATA_NOT_A_LIST, as_json({"data": '{"Area": 1}'})),
    # Unknown fields
    post("unknown-field", "/predict", 400, "debug", as_json({"data": [EXAMPLE_ROW], "debug": True})),
    post("classify-unknown-feature", "/v1/classify", 400, "beans.0.Colour: Extra inputs are not permitted",
         as_json({"beans": [{**EXAMPLE_BEAN, "Colour": 1.0}]})),
    # SQL where a value, a field name or a filter belongs
    post("sql-as-value", "/predict", 400, errors.NOT_A_NUMBER.format(row=1, feature="Area", value=json.dumps(SQL)),
         as_json({"data": [[SQL, *EXAMPLE_ROW[1:]]]})),
    post("sql-as-data", "/predict", 400, NOT_JSON, as_json({"data": SQL})),
    post("sql-as-field-name", "/v1/classify", 400, f"beans.0.{SQL}: Extra inputs are not permitted",
         as_json({"beans": [{**EXAMPLE_BEAN, SQL: 1.0}]})),
    query("sql-as-variety", "query.variety: Input should be 'BARBUNYA'", variety=SQL),
    query("sql-as-limit", "query.limit: Input should be a valid integer", limit=f"1; {SQL}"),
    # Bad query parameters
    query("limit-zero", "query.limit: Input should be greater than or equal to 1", limit="0"),
    query("limit-over-1000", "query.limit: Input should be less than or equal to 1000", limit="1001"),
    query("limit-fractional", "query.limit: Input should be a valid integer", limit="1.5"),
    query("offset-negative", "query.offset: Input should be greater than or equal to 0", offset="-1"),
    query("offset-beyond-bigint", "query.offset", offset=str(2**64)),
    query("variety-lower-case", "query.variety", variety="sira"),
    # Wrong methods and paths
    BadRequest("get-predict", "GET", "/predict", 405, "Method Not Allowed", content_type=None),
    BadRequest("put-classify", "PUT", "/v1/classify", 405, "Method Not Allowed", beans_body(1)),
    BadRequest("delete-predictions", "DELETE", "/v1/predictions", 405, "Method Not Allowed", content_type=None),
    post("post-counts", "/v1/predictions/counts", 405, "Method Not Allowed", b"{}"),
    BadRequest("put-counts", "PUT", "/v1/predictions/counts", 405, "Method Not Allowed", b"{}"),
    BadRequest("unknown-path", "GET", "/v2/predictions", 404, "Not Found", content_type=None),
    BadRequest("prediction-by-id", "GET", "/v1/predictions/1", 404, "Not Found", content_type=None),
    # The V2 protocol (protocol/): refusals are 400 (404 for a model or version not served), never 5xx
    post("v2-wrong-shape", V2_INFER, 400, "input 'features' has shape [1, 15]; it must be [n, 16]",
         v2_body(shape=[1, 15], data=EXAMPLE_ROW[:15])),
    post("v2-wrong-datatype", V2_INFER, 400, "datatype 'INT32'; this model takes FP64 or FP32",
         v2_body(datatype="INT32")),
    post("v2-missing-input", V2_INFER, 400, "missing input 'ShapeFactor4'", as_json({"inputs": [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]} for name, value in
        list(zip(FEATURES, EXAMPLE_ROW, strict=True))[:15]]})),
    post("v2-unknown-output", V2_INFER, 400, "unknown output 'proba'; this model outputs label, scores, probabilities",
         v2_body(outputs=[{"name": "proba"}])),
    post("v2-wrong-model", "/v2/models/iris/infer", 404, "unknown model 'iris'; this server serves 'drybean_svc'",
         v2_body()),
    post("v2-wrong-version", "/v2/models/drybean_svc/versions/v9/infer", 404, "has no version 'v9'", v2_body()),
    BadRequest("v2-metadata-wrong-model", "GET", "/v2/models/iris", 404, "unknown model 'iris'", content_type=None),
    post("v2-data-length", V2_INFER, 400, "input 'features' has 16 data elements; its shape [2, 16] needs 32",
         v2_body(shape=[2, 16])),
    post("v2-nesting", V2_INFER, 400, "nested data does not match its shape [2, 16]",
         v2_body(shape=[2, 16], data=[EXAMPLE_ROW[:8], EXAMPLE_ROW[8:]] * 2)),
    post("v2-string-element", V2_INFER, 400, "input 'features', element 0: \"33958\" is not a number",
         v2_body(data=["33958", *EXAMPLE_ROW[1:]])),
    post("v2-raw-nan", V2_INFER, 400, "element 0: nan is not a finite number",
         v2_body(data=["@", *EXAMPLE_ROW[1:]]).replace(b'"@"', b"NaN")),
    post("v2-no-inputs", V2_INFER, 400, "inputs: List should have at least 1 item", as_json({"inputs": []})),
    post("v2-inputs-missing", V2_INFER, 400, "inputs: Field required", as_json({"id": "1"})),
    post("v2-tensor-without-data", V2_INFER, 400, "input 'features' has no data: send its elements in `data`",
         as_json({"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP64"}]})),
    post("v2-truncated-json", V2_INFER, 400, "the body is not valid JSON", b'{"inputs": ['),
    post("v2-store-not-boolean", V2_INFER, 400, 'parameter "store" must be true or false',
         v2_body(parameters={"store": "no"})),
    post("v2-text-plain", V2_INFER, 415, JSON, v2_body(), "text/plain"),
    post("v2-ambiguous-inputs", V2_INFER, 400, "2 input tensors and none is a feature name", as_json({"inputs": [
        {"name": name, "shape": [1, 16], "datatype": "FP64", "data": EXAMPLE_ROW} for name in ("a", "b")]})),
    # Binary tensor data (Inference-Header-Content-Length): every size checked before a byte is read
    binary_post("v2-binary-short", 400, "its 128 bytes run past the end of the body (120 bytes left)",
                binary_bytes=BEAN_BYTES[:120], size=128),
    binary_post("v2-binary-long", 400, "8 bytes of binary data follow the last binary input",
                binary_bytes=BEAN_BYTES + BEAN_BYTES[:8], size=128),
    binary_post("v2-binary-size-not-the-shapes", 400, "binary_data_size is 120; shape [1, 16] of FP64 needs 128",
                binary_bytes=BEAN_BYTES[:120], size=120),
    binary_post("v2-binary-size-negative", 400, "binary_data_size must be a whole number of bytes, not -1", size=-1),
    binary_post("v2-binary-header-past-the-body", 400, "Inference-Header-Content-Length is '100000'; it must be",
                header="100000"),
    binary_post("v2-binary-header-not-a-number", 400, "Inference-Header-Content-Length is '12a'; it must be",
                header="12a"),
    binary_post("v2-binary-bytes-with-a-bad-length-prefix", 400, "datatype 'BYTES'; this model takes FP64 or FP32",
                binary_bytes=b"\xff\xff\xff\x7fSEKER", datatype="BYTES", shape=[1]),
    binary_post("v2-binary-size-and-data", 400, "has both binary_data_size and data", data=EXAMPLE_ROW),
    binary_post("v2-binary-size-without-the-header", 400, "has binary_data_size but the request has no "
                "Inference-Header-Content-Length", binary_bytes=b"", size=128, header=None),
    binary_post("v2-binary-output-flag-not-a-boolean", 400, "parameter binary_data must be true or false",
                outputs=[{"name": "label", "parameters": {"binary_data": "yes"}}]),
    post("v2-octet-stream-without-the-header", V2_INFER, 415, JSON, BEAN_BYTES, "application/octet-stream"),
    # Over the default limits
    post("10001-beans", "/predict", 413, errors.TOO_MANY_BEANS.format(count=10_001, limit=DEFAULT_MAX_BEANS),
         as_json({"data": [EXAMPLE_ROW] * (DEFAULT_MAX_BEANS + 1)})),
    post("classify-10001-beans", "/v1/classify", 413,
         errors.TOO_MANY_BEANS.format(count=10_001, limit=DEFAULT_MAX_BEANS), beans_body(DEFAULT_MAX_BEANS + 1)),
    post("body-over-16-mib", "/predict", 413, errors.BODY_TOO_LARGE.format(limit=DEFAULT_MAX_BODY_BYTES),
         as_json({"data": " " * DEFAULT_MAX_BODY_BYTES})),
    # Counts bounded before any tensor is read (issue #19; the heavy versions are in test_abuse.py)
    post("v2-21-named-inputs", V2_INFER, 400, "inputs: List should have at most 20 items", as_json({"inputs": [
        {"name": f"input-{i}", "shape": [1], "datatype": "FP64", "data": [1.0]} for i in range(21)]})),
    post("v2-17-parameters", V2_INFER, 400, "parameters: Dictionary should have at most 16 items",
         v2_body(parameters={"store": False, **{f"p{i}": i for i in range(16)}})),
    post("v2-tensor-17-parameters", V2_INFER, 400, "inputs.0.parameters: Dictionary should have at most 16 items",
         as_json({"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP64", "data": EXAMPLE_ROW,
                              "parameters": {f"p{i}": i for i in range(17)}}]})),
    post("v2-9-outputs", V2_INFER, 400, "outputs: List should have at most 8 items",
         v2_body(outputs=[{"name": "label"}] * 9)),
    post("v2-id-of-257-characters", V2_INFER, 400, "id: String should have at most 256 characters",
         v2_body(id="x" * 257)),
    # Two Content-Types: the guard and the application must not read different ones
    post("v2-two-content-types", V2_INFER, 415, "2 Content-Type headers", v2_body(),
         headers=(("Content-Type", "text/plain"),)),
    # No Content-Type is JSON only from a client that is not a web page (tritonclient sends none, and no Origin)
    post("v2-no-content-type-from-a-web-page", V2_INFER, 415, JSON, v2_body(), None,
         headers=(("Origin", "http://a.test"),)),
    # Client text is named, never echoed whole
    post("v2-long-datatype", V2_INFER, 400, f"datatype {errors.shown(LONG)}; this model takes FP64 or FP32",
         v2_body(datatype=LONG)),
    post("v2-long-input-name", V2_INFER, 400, f"unknown input {errors.shown(LONG)};", as_json({"inputs": [
        {"name": LONG, "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "Area", "shape": [1], "datatype": "FP64", "data": [1.0]}]})),
    post("v2-long-output-name", V2_INFER, 400, f"unknown output {errors.shown(LONG)};",
         v2_body(outputs=[{"name": LONG}])),
    post("v2-long-model-name", f"/v2/models/{LONG[:4000]}/infer", 404, f"unknown model {errors.shown(LONG)};",
         v2_body()),
    post("long-string-value", "/predict", 400,
         errors.NOT_A_NUMBER.format(row=1, feature="Area", value=errors.clipped(json.dumps(LONG))),
         as_json({"data": [[LONG, *EXAMPLE_ROW[1:]]]})),
    post("classify-long-field-name", "/v1/classify", 400,
         f"beans.0.{errors.clipped(LONG)}: Extra inputs are not permitted",
         as_json({"beans": [{**EXAMPLE_BEAN, LONG: 1.0}]})),
    post("feedback-long-variety", "/v1/feedback", 422, errors.UNKNOWN_VARIETY.format(
        name=errors.shown(LONG), known=", ".join(CLASSES)), as_json({"items": [{"record_id": 1, "variety": LONG}]})),
    # A `since` the database cannot compare with
    BadRequest("quality-since-in-the-year-10000", "GET", "/v1/quality", 422, "since must lie between 1000-01-01 and",
               content_type=None, params={"since": "9999-12-31T23:59:59-14:00"}),
]

LIMITED_BODY = errors.BODY_TOO_LARGE.format(limit=4096)
LIMITED_BEANS = errors.TOO_MANY_BEANS.format(count=4, limit=3)
# service.py's bounds for 3 beans
LIMITED_CONTAINERS = errors.TOO_MANY_CONTAINERS.format(limit=16 * 4 + 100)
LIMITED_VALUES = errors.TOO_MANY_VALUES.format(limit=16 * 4 + 1_000)
OVER_LIMITS: list[BadRequest] = [
    post("v2-4-beans", V2_INFER, 413, LIMITED_BEANS, v2_body(shape=[4, 16], data=EXAMPLE_ROW * 4)),
    post("4-beans", "/predict", 413, LIMITED_BEANS, as_json({"data": [EXAMPLE_ROW] * 4})),
    post("4-beans-in-string", "/predict", 413, LIMITED_BEANS, as_json({"data": json.dumps([EXAMPLE_ROW] * 4)})),
    post("classify-4-beans", "/v1/classify", 413, LIMITED_BEANS, beans_body(4)),
    post("body-over-limit", "/predict", 413, LIMITED_BODY, as_json({"data": " " * 5000})),
    post("classify-body-over-limit", "/v1/classify", 413, LIMITED_BODY, beans_body(20)),
    post("chunked-body-over-limit", "/predict", 413, LIMITED_BODY, as_json({"data": " " * 5000}), chunked=True),
    post("nested-10000-over-limit", "/predict", 413, LIMITED_BODY, f'{{"data": {nested(10_000)}}}'.encode()),
    post("escaped-brackets-in-string", "/predict", 413, LIMITED_CONTAINERS, as_json({"data": "[" + ",".join(
        ["[1]"] * 200) + "]"}).replace(b"[", b"\\u005b").replace(b"]", b"\\u005d").replace(b",", b"\\u002c")),
    post("1100-numbers", "/predict", 413, LIMITED_VALUES, as_json({"data": [1] * 1_100})),
]
