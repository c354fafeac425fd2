"""V2 tensors in and out: input tensors to a feature matrix (or an InvalidInput naming the problem), predictions to
output tensors.

Inputs: one tensor "features" of shape [n, 16], columns in the dataset's order (data/schema.py), or the 16 features
as tensors of shape [n] (or [n, 1], as dataframe codecs send columns) named as the dataset names them. FP64 or FP32
(FP32 values are taken as float32, then computed in float64). `data` is row-major, flat or nested as the shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

import errors
import parsing
from data.schema import FEATURES, MAX_MAGNITUDE
from protocol.schemas import MetadataTensor, RequestInput, RequestOutput, ResponseOutput

Matrix = npt.NDArray[np.float64]

FEATURES_INPUT = "features"
INPUT_DATATYPES: dict[str, type[np.floating[Any]]] = {"FP64": np.float64, "FP32": np.float32}
LABEL, SCORES, PROBABILITIES = "label", "scores", "probabilities"
OUTPUTS = (LABEL, SCORES, PROBABILITIES)

INPUT_HELP = (f'send one FP64 (or FP32) tensor "{FEATURES_INPUT}" of shape [n, {len(FEATURES)}], or the '
              f"{len(FEATURES)} features as tensors of shape [n] named {', '.join(FEATURES)}")
UNKNOWN_INPUTS = "unknown input {names}; " + INPUT_HELP
MISSING_INPUTS = "missing input {names}; " + INPUT_HELP
DUPLICATE_INPUT = "input {name} is given more than once"
FEATURES_NOT_ALONE = f'input "{FEATURES_INPUT}" holds all {len(FEATURES)} features: send it alone, not with {{names}}'
WRONG_DATATYPE = "input {name} has datatype {datatype}; this model takes FP64 or FP32"
WRONG_SHAPE = "input {name} has shape {shape}; it must be {expected}"
DIFFERENT_LENGTHS = "the feature tensors have different lengths: {name} has {count} beans, {first} has {expected}"
DATA_LENGTH = "input {name} has {count} data elements; its shape {shape} needs {expected}"
DATA_NESTING = "input {name}: nested data does not match its shape {shape}; send it flat, or nested as the shape"
NOT_A_NUMBER = "input {name}, element {index}: {value} is not a number"
NOT_FINITE = "input {name}, element {index}: {value} is not a finite number"
OUT_OF_RANGE = "input {name}, element {index}: {value} is out of range; measurements lie within ±{limit:g}"
UNKNOWN_OUTPUT = "unknown output {name}; this model outputs " + ", ".join(OUTPUTS)
DUPLICATE_OUTPUT = "output {name} is requested more than once"


def input_metadata() -> list[MetadataTensor]:
    """The model's input, as metadata lists it (the alternative named [n] tensors are in the API docs)."""
    return [MetadataTensor(name=FEATURES_INPUT, datatype="FP64", shape=[-1, len(FEATURES)])]


def output_metadata(n_classes: int) -> list[MetadataTensor]:
    """The model's outputs."""
    return [MetadataTensor(name=LABEL, datatype="BYTES", shape=[-1]),
            MetadataTensor(name=SCORES, datatype="FP64", shape=[-1, n_classes]),
            MetadataTensor(name=PROBABILITIES, datatype="FP64", shape=[-1, n_classes])]


def feature_matrix(inputs: Sequence[RequestInput], max_beans: int) -> Matrix:
    """The (n, 16) matrix the inputs hold; InvalidInput naming the problem, TooLarge over `max_beans`."""
    names = [tensor.name for tensor in inputs]
    _refuse_repeats(names, DUPLICATE_INPUT)
    if FEATURES_INPUT in names:
        if len(inputs) > 1:
            others = ", ".join(errors.shown(name) for name in names if name != FEATURES_INPUT)
            raise errors.InvalidInput(FEATURES_NOT_ALONE.format(names=others))
        tensor = inputs[0]
        dtype = _datatype(tensor)
        if len(tensor.shape) != 2 or tensor.shape[1] != len(FEATURES) or tensor.shape[0] < 0:
            raise errors.InvalidInput(WRONG_SHAPE.format(name=errors.shown(tensor.name), shape=_shape(tensor),
                                                         expected=f"[n, {len(FEATURES)}]"))
        parsing.check_count(tensor.shape[0], max_beans)
        return _values(tensor, dtype).reshape(tensor.shape[0], len(FEATURES))
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise errors.InvalidInput(UNKNOWN_INPUTS.format(names=", ".join(errors.shown(name) for name in unknown)))
    missing = [name for name in FEATURES if name not in names]
    if missing:
        raise errors.InvalidInput(MISSING_INPUTS.format(names=", ".join(errors.shown(name) for name in missing)))
    by_name = {tensor.name: tensor for tensor in inputs}
    first = by_name[FEATURES[0]]
    count = _column_length(first)
    columns = []
    for name in FEATURES:
        tensor = by_name[name]
        dtype = _datatype(tensor)
        length = _column_length(tensor)
        if length != count:
            raise errors.InvalidInput(DIFFERENT_LENGTHS.format(name=errors.shown(name), count=length,
                                                               first=errors.shown(first.name), expected=count))
        if name == FEATURES[0]:
            parsing.check_count(count, max_beans)
        columns.append(_values(tensor, dtype))
    return np.column_stack(columns)


def requested_outputs(outputs: Sequence[RequestOutput] | None) -> list[str]:
    """The names of the outputs to answer, in the order asked (all when none are named)."""
    if outputs is None:
        return list(OUTPUTS)
    names = [output.name for output in outputs]
    for name in names:
        if name not in OUTPUTS:
            raise errors.InvalidInput(UNKNOWN_OUTPUT.format(name=errors.shown(name)))
    _refuse_repeats(names, DUPLICATE_OUTPUT)
    return names


def output_tensors(names: Sequence[str], classes: Sequence[str], labels: npt.NDArray[np.str_], scores: Matrix,
                   calibrate: Callable[[Matrix], Matrix]) -> list[ResponseOutput]:
    """The outputs `names`, in that order. `scores` and `probabilities` (`calibrate(scores)`) are rows x classes,
    columns in `classes` order, which each tensor's parameter `columns` lists."""
    outputs = []
    for name in names:
        if name == LABEL:
            outputs.append(ResponseOutput(name=LABEL, shape=[len(labels)], datatype="BYTES", data=labels.tolist()))
        else:
            table = scores if name == SCORES else calibrate(scores)
            outputs.append(ResponseOutput(name=name, shape=list(table.shape), datatype="FP64",
                                          data=table.ravel().tolist(), parameters={"columns": ",".join(classes)}))
    return outputs


def _datatype(tensor: RequestInput) -> type[np.floating[Any]]:
    dtype = INPUT_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise errors.InvalidInput(WRONG_DATATYPE.format(name=errors.shown(tensor.name),
                                                        datatype=errors.shown(tensor.datatype)))
    return dtype


def _column_length(tensor: RequestInput) -> int:
    if tensor.shape[:1] and tensor.shape[0] >= 0 and tensor.shape[1:] in ([], [1]):
        return tensor.shape[0]
    raise errors.InvalidInput(WRONG_SHAPE.format(name=errors.shown(tensor.name), shape=_shape(tensor),
                                                 expected="[n] or [n, 1]"))


def _values(tensor: RequestInput, dtype: type[np.floating[Any]]) -> Matrix:
    """The tensor's elements, flat, as float64: checked to be finite numbers within range, as many as its shape."""
    expected = math.prod(tensor.shape)
    flat = _flatten(tensor)
    if len(flat) != expected:
        raise errors.InvalidInput(DATA_LENGTH.format(name=errors.shown(tensor.name), count=len(flat),
                                                     shape=_shape(tensor), expected=expected))
    for index, value in enumerate(flat):
        if type(value) is float:
            continue
        # bool is an int in Python, and "1.5" would pass np.array: neither is a measurement.
        if type(value) is not int:
            raise errors.InvalidInput(NOT_A_NUMBER.format(name=errors.shown(tensor.name), index=index,
                                                          value=errors.clipped(json.dumps(value))))
        if abs(value) > MAX_MAGNITUDE:  # also ints beyond float64, which np.array would refuse
            raise errors.InvalidInput(OUT_OF_RANGE.format(name=errors.shown(tensor.name), index=index,
                                                          value=errors.clipped(str(value)), limit=MAX_MAGNITUDE))
    values = np.array(flat, dtype=np.float64)
    bad = ~np.isfinite(values) | (np.abs(values) > MAX_MAGNITUDE)
    if bad.any():
        index = int(np.argmax(bad))
        message = OUT_OF_RANGE if math.isfinite(values[index]) else NOT_FINITE
        raise errors.InvalidInput(message.format(name=errors.shown(tensor.name), index=index, value=values[index],
                                                 limit=MAX_MAGNITUDE))
    return values if dtype is np.float64 else values.astype(dtype).astype(np.float64)


def _flatten(tensor: RequestInput) -> list[Any]:
    """The elements of flat data, or of data nested exactly as the shape."""
    data = tensor.data
    if not data or not isinstance(data[0], list):
        return data
    if len(tensor.shape) == 2 and len(data) == tensor.shape[0]:
        width = tensor.shape[1]
        if all(type(row) is list and len(row) == width for row in data):
            return [value for row in data for value in row]
    raise errors.InvalidInput(DATA_NESTING.format(name=errors.shown(tensor.name), shape=_shape(tensor)))


def _refuse_repeats(names: Sequence[str], message: str) -> None:
    """InvalidInput naming the first name given twice (in one pass: a request may name thousands)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.InvalidInput(message.format(name=errors.shown(name)))
        seen.add(name)


def _shape(tensor: RequestInput) -> str:
    return errors.clipped(str(tensor.shape))
