"""V2 input tensors, decoded to numpy, into the (n, 16) feature matrix: one set of rules for every transport.

A request holds either one [n, 16] (or [16]) tensor, whatever its name ("features" in this service's metadata,
"input-0" or "predict" as MLServer's and KServe's sklearn runtimes take it), or the 16 features as tensors of shape
[n] (or [n, 1]) named as the dataset names them. JSON `data`, binary tensor data and gRPC contents are all decoded
into `Tensor`s first; this module checks names, shapes, counts and values once for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import errors
import parsing
from data.schema import FEATURES, MAX_MAGNITUDE

Matrix = npt.NDArray[np.float64]

FEATURES_INPUT = "features"
ITEM_SIZES = {"FP64": 8, "FP32": 4}
DTYPES: dict[str, np.dtype[Any]] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}

INPUT_HELP = (f"send one FP64 (or FP32) tensor of shape [n, {len(FEATURES)}] (any name, e.g. "
              f'"{FEATURES_INPUT}"), or the {len(FEATURES)} features as tensors of shape [n] named '
              f"{', '.join(FEATURES)}")
AMBIGUOUS_INPUTS = "{count} input tensors and none is a feature name, so which one holds the beans? " + INPUT_HELP
UNKNOWN_INPUTS = "unknown input {names}; " + INPUT_HELP
MISSING_INPUTS = "missing input {names}; " + INPUT_HELP
DUPLICATE_INPUT = "input {name} is given more than once"
TOO_MANY_INPUTS = f"{{count}} input tensors; this model takes at most {len(FEATURES)}: " + INPUT_HELP
WRONG_DATATYPE = "input {name} has datatype {datatype}; this model takes FP64 or FP32"
WRONG_SHAPE = "input {name} has shape {shape}; it must be {expected}"
DIFFERENT_LENGTHS = "the feature tensors have different lengths: {name} has {count} beans, {first} has {expected}"
NOT_FINITE = "input {name}, element {index}: {value} is not a finite number"
OUT_OF_RANGE = "input {name}, element {index}: {value} is out of range; measurements lie within ±{limit:g}"


@dataclass(frozen=True)
class Tensor:
    """An input tensor as the transport decoded it: `values` flat, float64, as many as `shape` needs."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: Matrix


def element_count(name: str, datatype: str, shape: Sequence[int]) -> int:
    """The number of elements `shape` holds, once the datatype and shape are known to be ones this model takes.

    Called before any element is decoded, so that a tensor's declared size is checked before memory is spent on it.
    """
    if datatype not in ITEM_SIZES:
        raise errors.InvalidInput(WRONG_DATATYPE.format(name=errors.shown(name), datatype=errors.shown(datatype)))
    if not 1 <= len(shape) <= 2 or any(dimension < 0 for dimension in shape):
        raise errors.InvalidInput(WRONG_SHAPE.format(name=errors.shown(name), shape=errors.shown(list(shape)),
                                                     expected=f"[n, {len(FEATURES)}], [{len(FEATURES)}] or [n]"))
    return math.prod(shape)


def feature_matrix(tensors: Sequence[Tensor], max_beans: int) -> Matrix:
    """The (n, 16) matrix the tensors hold; InvalidInput naming the problem, TooLarge over `max_beans`."""
    if len(tensors) > len(FEATURES):
        raise errors.InvalidInput(TOO_MANY_INPUTS.format(count=len(tensors)))
    by_name: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name in by_name:
            raise errors.InvalidInput(DUPLICATE_INPUT.format(name=errors.shown(tensor.name)))
        by_name[tensor.name] = tensor
    named_features = [name for name in by_name if name in FEATURES]
    if len(tensors) == 1 and not named_features:
        return _matrix(tensors[0], max_beans)
    if not named_features:
        raise errors.InvalidInput(AMBIGUOUS_INPUTS.format(count=len(tensors)))
    unknown = [name for name in by_name if name not in FEATURES]
    if unknown:
        raise errors.InvalidInput(UNKNOWN_INPUTS.format(names=", ".join(errors.shown(name) for name in unknown)))
    missing = [name for name in FEATURES if name not in by_name]
    if missing:
        raise errors.InvalidInput(MISSING_INPUTS.format(names=", ".join(repr(name) for name in missing)))
    first = by_name[FEATURES[0]]
    count = _column_length(first)
    parsing.check_count(count, max_beans)
    columns = []
    for name in FEATURES:
        tensor = by_name[name]
        length = _column_length(tensor)
        if length != count:
            raise errors.InvalidInput(DIFFERENT_LENGTHS.format(name=repr(name), count=length, first=repr(first.name),
                                                               expected=count))
        columns.append(_checked(tensor))
    return np.column_stack(columns)


def _matrix(tensor: Tensor, max_beans: int) -> Matrix:
    """One tensor holding whole beans: [n, 16], or one bean as [16]."""
    width = len(FEATURES)
    if tensor.shape not in ((width,), (tensor.shape[0], width)):
        raise errors.InvalidInput(WRONG_SHAPE.format(name=errors.shown(tensor.name), shape=list(tensor.shape),
                                                     expected=f"[n, {width}] or [{width}]"))
    count = 1 if len(tensor.shape) == 1 else tensor.shape[0]
    parsing.check_count(count, max_beans)
    return _checked(tensor).reshape(count, width)


def _column_length(tensor: Tensor) -> int:
    if tensor.shape[1:] in ((), (1,)):
        return tensor.shape[0]
    raise errors.InvalidInput(WRONG_SHAPE.format(name=repr(tensor.name), shape=list(tensor.shape),
                                                 expected="[n] or [n, 1]"))


def _checked(tensor: Tensor) -> Matrix:
    """The tensor's values, refused when any is not finite or outside the measurements' range."""
    values = tensor.values
    bad = ~np.isfinite(values) | (np.abs(values) > MAX_MAGNITUDE)
    if bad.any():
        index = int(np.argmax(bad))
        message = OUT_OF_RANGE if math.isfinite(values[index]) else NOT_FINITE
        raise errors.InvalidInput(message.format(name=errors.shown(tensor.name), index=index, value=values[index],
                                                 limit=MAX_MAGNITUDE))
    return values
