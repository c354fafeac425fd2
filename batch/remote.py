"""Scoring done by a running service over V2 (REST, binary tensor data both ways), a few requests in flight.

Each chunk's valid rows go in requests of `REQUEST_BEANS` beans as one [n, 16] FP64 tensor; every output comes back
binary (protocol/binary.py documents the format). Rows are checked here first, by the same rules as the service's,
so that one bad row is refused alone instead of failing its whole request.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pandas as pd

from batch.scoring import Predictions, label_categories, set_categories, split_valid, with_predictions
from data.schema import CLASSES
from model import MODEL_NAME
from protocol.binary import ALL_OUTPUTS, HEADER, SIZE

REQUEST_BEANS = 10_000  # the service's default limit per request
IN_FLIGHT = 3  # enough to keep the service's workers busy while answers are decoded here
TIMEOUT_SECONDS = 120.0
UNREACHABLE = "cannot reach the service at {url} ({reason}): start it (bentoml serve), or check --url"
REFUSED = "the service at {url} answered {status}: {message}"
NOT_THIS_SERVICE = "the service at {url} answered {answered} beans for {sent}: is it this project's service (V2)?"


class ServiceProblem(RuntimeError):
    """The service could not be reached, or refused a request; the message says which and why."""


class RemoteScorer:
    """Scores chunks through a service's `POST /v2/models/drybean_svc/infer`; `store` is the request's parameter."""

    def __init__(self, url: str, *, store: bool) -> None:
        self.url = url.rstrip("/")
        self._store = store
        self._client = httpx.Client(base_url=self.url, timeout=TIMEOUT_SECONDS,
                                    limits=httpx.Limits(max_connections=IN_FLIGHT))
        self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="v2-request")
        self._outputs = self._output_names()  # also: is the service there, before anything is read or written

    def __call__(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(scored, rejects) as batch.scoring.score_frame gives them, the model's part answered by the service."""
        valid, rows, rejects = split_valid(frame)
        parts = [rows[start:start + REQUEST_BEANS] for start in range(0, len(rows), REQUEST_BEANS)]
        answers = list(self._pool.map(self._infer, parts))
        return with_predictions(valid, self._joined(answers, len(rows))), rejects

    def close(self) -> None:
        """Release the connections and threads."""
        self._pool.shutdown()
        self._client.close()

    def _output_names(self) -> list[str]:
        """The outputs the service's model gives (prediction sets and in_distribution only when it has them)."""
        answer = self._call(lambda: self._client.get(f"/v2/models/{MODEL_NAME}"))
        return [output["name"] for output in answer.json()["outputs"]]

    def _call(self, request: Callable[[], httpx.Response]) -> httpx.Response:
        """The answer, 200; ServiceProblem naming why not."""
        try:
            answer = request()
        except httpx.HTTPError as exc:
            raise ServiceProblem(UNREACHABLE.format(url=self.url, reason=str(exc) or type(exc).__name__)) from None
        if answer.status_code != 200:
            raise ServiceProblem(REFUSED.format(url=self.url, status=answer.status_code, message=_message(answer)))
        return answer

    def _joined(self, answers: list[dict[str, Any]], count: int) -> Predictions:
        """One chunk's predictions from its requests' answers, in order."""
        def stacked(name: str, empty: npt.NDArray[Any]) -> Any:
            if name not in self._outputs:
                return None
            return np.concatenate([answer[name] for answer in answers]) if answers else empty

        no_flags = np.zeros(0, dtype=np.bool_)
        sets = stacked("prediction_set", np.zeros(0, dtype=object))
        predictions = Predictions(label_categories(stacked("label", np.zeros(0, dtype=object))),
                                  stacked("probabilities", np.zeros((0, len(CLASSES)))),
                                  None if sets is None else set_categories(sets),
                                  stacked("needs_review", no_flags), stacked("consistent", no_flags),
                                  stacked("in_distribution", no_flags))
        if len(predictions.labels) != count:
            raise ServiceProblem(NOT_THIS_SERVICE.format(url=self.url, answered=len(predictions.labels), sent=count))
        return predictions

    def _infer(self, rows: npt.NDArray[np.float64]) -> dict[str, Any]:
        """One request's outputs by name, decoded."""
        data = np.ascontiguousarray(rows, dtype="<f8").tobytes()
        header = json.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": list(rows.shape),
                                         "parameters": {SIZE: len(data)}}],
                             "parameters": {"store": self._store, ALL_OUTPUTS: True}}).encode()
        answer = self._call(lambda: self._client.post(
            f"/v2/models/{MODEL_NAME}/infer", content=header + data,
            headers={HEADER: str(len(header)), "Content-Type": "application/octet-stream"}))
        return _outputs(answer, len(rows))


def _outputs(answer: httpx.Response, count: int) -> dict[str, Any]:
    """The answer's outputs by name, each decoded from the binary part that follows the JSON."""
    length = int(answer.headers.get(HEADER, len(answer.content)))
    body = memoryview(answer.content)
    described = json.loads(bytes(body[:length]))
    offset, outputs = length, {}
    for output in described["outputs"]:
        size = int(output["parameters"][SIZE])
        raw = body[offset:offset + size]
        offset += size
        if output["datatype"] == "FP64":
            table = np.frombuffer(raw, dtype="<f8").reshape(count, -1)
            columns = output["parameters"]["columns"].split(",")
            outputs[output["name"]] = table[:, [columns.index(variety) for variety in CLASSES]]
        elif output["datatype"] == "BOOL":
            outputs[output["name"]] = np.frombuffer(raw, dtype=np.uint8).astype(np.bool_)
        else:
            outputs[output["name"]] = np.array(_strings(raw), dtype=object)
    return outputs


def _strings(raw: memoryview) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then its bytes."""
    strings, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        strings.append(bytes(raw[offset + 4:offset + 4 + size]).decode())
        offset += 4 + size
    return strings


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("error", answer.text))
    except ValueError:
        return answer.text[:200]

