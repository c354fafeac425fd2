"""V2 tensors in and out over REST: JSON (and binary) input tensors decoded for protocol/arrays.py, which builds the
feature matrix; predictions to output tensors, as JSON `data` or as binary tensor data (protocol/binary.py).

JSON `data` is row-major, flat or nested as the shape; each element must be a JSON number (bool, strings and null are
refused, naming the element), and an integer beyond float64 is out of range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from api import errors
from data.schema import FEATURES, MAX_MAGNITUDE
from protocol import arrays, binary
from protocol.schemas import MetadataTensor, RequestInput, RequestOutput, ResponseOutput
from trust.conformal import named_sets

Matrix = npt.NDArray[np.float64]

LABEL, SCORES, PROBABILITIES = "label", "scores", "probabilities"
PREDICTION_SET, NEEDS_REVIEW, CONSISTENT, IN_DISTRIBUTION = ("prediction_set", "needs_review", "consistent",
                                                             "in_distribution")
OUTPUTS = (LABEL, SCORES, PROBABILITIES, PREDICTION_SET, NEEDS_REVIEW, CONSISTENT, IN_DISTRIBUTION)



class Named(Protocol):
    """A requested output, as REST's and gRPC's requests each carry it."""

    @property
    def name(self) -> str:
        """The output's name."""
        ...


def input_metadata() -> list[MetadataTensor]:
    """The model's input, as metadata lists it (any name does; the alternative named [n] tensors are in the API
    docs)."""
    return [MetadataTensor(name=arrays.FEATURES_INPUT, datatype="FP64", shape=[-1, len(FEATURES)])]


def output_metadata(classifier: Any) -> list[MetadataTensor]:
    """The model's outputs."""
    n_classes = len(classifier.classes)
    shapes = {SCORES: ("FP64", [-1, n_classes]), PROBABILITIES: ("FP64", [-1, n_classes]), LABEL: ("BYTES", [-1]),
              PREDICTION_SET: ("BYTES", [-1]), NEEDS_REVIEW: ("BOOL", [-1]), CONSISTENT: ("BOOL", [-1]),
              IN_DISTRIBUTION: ("BOOL", [-1])}
    return [MetadataTensor(name=name, datatype=shapes[name][0], shape=shapes[name][1])
            for name in available_outputs(classifier)]


def feature_matrix(inputs: Sequence[RequestInput], max_beans: int, data: memoryview | None = None) -> Matrix:
    """The (n, 16) matrix the inputs hold, their elements in JSON `data` or in `data`, the binary part of the body;
    InvalidInput naming the problem, TooLarge over `max_beans` (before any element is read)."""
    return arrays.feature_matrix(input_tensors(inputs, data), max_beans)


def input_tensors(inputs: Sequence[RequestInput], data: memoryview | None) -> list[arrays.Tensor]:
    """Each input declared for decoding: from its JSON `data`, or from its `binary_data_size` bytes of `data`, the
    binary part of the body (whose sizes must add up to it exactly)."""
    declared, offset = [], 0
    for tensor in inputs:
        size = binary.binary_size(tensor.name, tensor.parameters)
        if size is None:
            declared.append(_json_tensor(tensor))
            continue
        if data is None:
            raise errors.InvalidInput(errors.NOT_BINARY.format(name=errors.shown(tensor.name)))
        if tensor.data is not None:
            raise errors.InvalidInput(errors.SIZE_AND_DATA.format(name=errors.shown(tensor.name)))
        declared.append(binary.tensor(tensor.name, tensor.datatype, tensor.shape, size, data, offset))
        offset += size
    if data is not None:
        binary.check_consumed(data, offset)
    return declared


def requested_outputs(outputs: Sequence[Named] | None, available: Sequence[str] = OUTPUTS) -> list[str]:
    """The names of the outputs to answer, in the order asked (all the model gives when none are named)."""
    if outputs is None:
        return list(available)
    names = [output.name for output in outputs]
    for name in names:
        if name not in available:
            raise errors.InvalidInput(errors.UNKNOWN_OUTPUT.format(name=errors.shown(name),
                                                                   outputs=", ".join(available)))
    _refuse_repeats(names, errors.DUPLICATE_OUTPUT)
    return names


def binary_outputs(outputs: Sequence[RequestOutput] | None, names: Sequence[str],
                   parameters: dict[str, Any] | None) -> frozenset[str]:
    """The outputs to answer as binary data: those asked with `binary_data: true`, or, by the request's
    `binary_data_output`, every output not asked otherwise."""
    default = binary.flag(binary.ALL_OUTPUTS, parameters)
    if outputs is None:
        return frozenset(names) if default else frozenset()
    return frozenset(output.name for output in outputs if binary.flag(binary.OUTPUT, output.parameters, default))


@dataclass(frozen=True)
class OutputArray:
    """One output, transport-neutral: REST writes it as JSON `data` or binary data, gRPC as contents or raw."""

    name: str
    datatype: str  # BYTES, FP64 or BOOL
    values: npt.NDArray[Any] | list[bytes]  # FP64 (n, 7) or BOOL (n,) arrays; BYTES as encoded strings
    columns: str | None = None  # the varieties, comma-joined, for a table

    @property
    def shape(self) -> list[int]:
        return list(self.values.shape) if isinstance(self.values, np.ndarray) else [len(self.values)]

    @property
    def parameters(self) -> dict[str, Any]:
        return {"columns": self.columns} if self.columns else {}

    def data(self) -> list[Any]:
        """Flat, row-major elements for JSON (BYTES as text)."""
        if isinstance(self.values, np.ndarray):
            return self.values.ravel().tolist()  # type: ignore[no-any-return]
        return [value.decode() for value in self.values]

    def raw(self) -> bytes:
        """The binary form: length-prefixed strings, little-endian doubles, one byte per boolean."""
        if not isinstance(self.values, np.ndarray):
            return binary.length_prefixed(self.values)
        dtype = "<f8" if self.datatype == "FP64" else "u1"
        return np.ascontiguousarray(self.values, dtype=dtype).tobytes()


def available_outputs(classifier: Any) -> tuple[str, ...]:
    """The outputs a model gives: prediction sets and the distribution flag need what train.py now fits."""
    return tuple(name for name in OUTPUTS if (name != PREDICTION_SET or classifier.conformal is not None)
                 and (name != IN_DISTRIBUTION or classifier.ood is not None))


def output_arrays(names: Sequence[str], classifier: Any, labels: npt.NDArray[np.str_], scores: Matrix,
                  assessment: Any) -> list[OutputArray]:
    """The outputs `names`, in that order. `scores` and `probabilities` are rows x classes, columns in the
    classifier's order, which each tensor's parameter `columns` lists; `prediction_set` is each set's varieties,
    comma-joined (empty: none likely enough)."""
    classes = classifier.classes
    arrays_by_name: dict[str, Callable[[], OutputArray]] = {
        LABEL: lambda: OutputArray(LABEL, "BYTES", [label.encode() for label in labels.tolist()]),
        SCORES: lambda: OutputArray(SCORES, "FP64", scores, ",".join(classes)),
        PROBABILITIES: lambda: OutputArray(PROBABILITIES, "FP64", assessment.probabilities, ",".join(classes)),
        PREDICTION_SET: lambda: OutputArray(PREDICTION_SET, "BYTES", [
            ",".join(names).encode() for names in named_sets(assessment.sets, classes)]),
        NEEDS_REVIEW: lambda: OutputArray(NEEDS_REVIEW, "BOOL", assessment.needs_review),
        CONSISTENT: lambda: OutputArray(CONSISTENT, "BOOL", assessment.consistent),
        IN_DISTRIBUTION: lambda: OutputArray(IN_DISTRIBUTION, "BOOL", assessment.in_distribution),
    }
    given = available_outputs(classifier)  # a canary saved before prediction sets: the others only
    return [arrays_by_name[name]() for name in names if name in given]


def output_tensors(arrays_out: Sequence[OutputArray], as_binary: frozenset[str] = frozenset(),
                   ) -> tuple[list[ResponseOutput], list[bytes]]:
    """REST's output tensors, and the binary data of those in `as_binary` (in the same order)."""
    outputs, blobs = [], []
    for array in arrays_out:
        if array.name in as_binary:
            blob = array.raw()
            blobs.append(blob)
            outputs.append(ResponseOutput(name=array.name, shape=array.shape, datatype=array.datatype,
                                          parameters={**array.parameters, binary.SIZE: len(blob)}))
        else:
            outputs.append(ResponseOutput(name=array.name, shape=array.shape, datatype=array.datatype,
                                          parameters=array.parameters or None, data=array.data()))
    return outputs, blobs


def _json_tensor(tensor: RequestInput) -> arrays.Tensor:
    """A JSON tensor, decoded to float64 once its shape is known good: as many elements as the shape holds, each a
    number within range."""

    def decode() -> Matrix:
        if tensor.data is None:
            raise errors.InvalidInput(errors.NO_DATA.format(name=errors.shown(tensor.name)))
        count = math.prod(tensor.shape)
        flat = _flatten(tensor)
        if len(flat) != count:
            raise errors.InvalidInput(errors.DATA_LENGTH.format(name=errors.shown(tensor.name), count=len(flat),
                                                         shape=_shape(tensor), expected=count))
        for index, value in enumerate(flat):
            if type(value) is float:
                continue
            # bool is an int in Python, and "1.5" would pass np.array: neither is a measurement.
            if type(value) is not int:
                raise errors.InvalidInput(errors.V2_NOT_A_NUMBER.format(name=errors.shown(tensor.name), index=index,
                                                              value=errors.clipped(json.dumps(value))))
            if abs(value) > MAX_MAGNITUDE:  # also ints beyond float64, which np.array would refuse
                raise errors.InvalidInput(errors.V2_OUT_OF_RANGE.format(name=errors.shown(tensor.name), index=index,
                                                              value=errors.clipped(str(value)), limit=MAX_MAGNITUDE))
        return np.array(flat, dtype=np.float64)

    return arrays.Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), decode)


def _flatten(tensor: RequestInput) -> list[Any]:
    """The elements of flat data, or of data nested exactly as the shape."""
    data = tensor.data or []
    if not data or not isinstance(data[0], list):
        return data
    if len(tensor.shape) == 2 and len(data) == tensor.shape[0]:
        width = tensor.shape[1]
        if all(type(row) is list and len(row) == width for row in data):
            return [value for row in data for value in row]
    raise errors.InvalidInput(errors.DATA_NESTING.format(name=errors.shown(tensor.name), shape=_shape(tensor)))


def _refuse_repeats(names: Sequence[str], message: str) -> None:
    """InvalidInput naming the first name given twice (in one pass: a request may name thousands)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.InvalidInput(message.format(name=errors.shown(name)))
        seen.add(name)


def _shape(tensor: RequestInput) -> str:
    return errors.clipped(str(tensor.shape))
