"""V2 input tensors, decoded to numpy, into the (n, 16) feature matrix: one set of rules for every transport.

A request holds either one [n, 16] (or [16]) tensor, whatever its name ("features" in this service's metadata,
"input-0" or "predict" as MLServer's and KServe's sklearn runtimes take it), or the 16 features as tensors of shape
[n] (or [n, 1]) named as the dataset names them. Each transport (JSON `data`, binary tensor data, gRPC contents)
declares its inputs as `Tensor`s; this module checks names, datatypes, shapes and the bean count before any tensor
is decoded, then the decoded values, once for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api import errors, parsing
from data.schema import FEATURES, MAX_MAGNITUDE

Matrix = npt.NDArray[np.float64]

FEATURES_INPUT = errors.V2_FEATURES_INPUT
ITEM_SIZES = {"FP64": 8, "FP32": 4}
DTYPES: dict[str, np.dtype[Any]] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}



@dataclass(frozen=True)
class Tensor:
    """An input tensor as the transport declared it; `decode()` gives its elements, flat, as many as `shape` holds
    (called once its name, datatype and shape are known to be usable): float64 from JSON, the datatype's own width
    from binary data."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    decode: Callable[[], npt.NDArray[np.floating[Any]]]


def feature_matrix(tensors: Sequence[Tensor], max_beans: int) -> Matrix:
    """The (n, 16) matrix the tensors hold; InvalidInput naming the problem, TooLarge over `max_beans`."""
    by_name: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name in by_name:
            raise errors.InvalidInput(errors.DUPLICATE_INPUT.format(name=errors.shown(tensor.name)))
        by_name[tensor.name] = tensor
    named_features = [name for name in by_name if name in FEATURES]
    if len(tensors) == 1 and not named_features:
        return _matrix(tensors[0], max_beans)
    if FEATURES_INPUT in by_name:
        others = ", ".join(errors.shown(name) for name in by_name if name != FEATURES_INPUT)
        raise errors.InvalidInput(errors.FEATURES_NOT_ALONE.format(names=others))
    if not named_features:
        raise errors.InvalidInput(errors.AMBIGUOUS_INPUTS.format(count=len(tensors)))
    unknown = [name for name in by_name if name not in FEATURES]
    if unknown:
        raise errors.InvalidInput(errors.UNKNOWN_INPUTS.format(names=", ".join(errors.shown(name) for name in unknown)))
    missing = [name for name in FEATURES if name not in by_name]
    if missing:
        raise errors.InvalidInput(errors.MISSING_INPUTS.format(names=", ".join(repr(name) for name in missing)))
    first = by_name[FEATURES[0]]
    count = _column_length(first)
    for name in FEATURES:
        length = _column_length(by_name[name])
        if length != count:
            raise errors.InvalidInput(errors.DIFFERENT_LENGTHS.format(name=repr(name), count=length,
                                                                      first=repr(first.name), expected=count))
    parsing.check_count(count, max_beans)
    return np.column_stack([_checked(by_name[name]) for name in FEATURES])


def _matrix(tensor: Tensor, max_beans: int) -> Matrix:
    """One tensor holding whole beans: [n, 16], or one bean as [16]."""
    _check_datatype(tensor)
    width = len(FEATURES)
    if tensor.shape not in ((width,), (tensor.shape[0], width)) or tensor.shape[0] < 0:
        raise errors.InvalidInput(errors.WRONG_SHAPE.format(name=errors.shown(tensor.name), shape=_shown_shape(tensor),
                                                     expected=f"[n, {width}] or [{width}]"))
    count = 1 if len(tensor.shape) == 1 else tensor.shape[0]
    parsing.check_count(count, max_beans)
    return _checked(tensor).reshape(count, width)


def _column_length(tensor: Tensor) -> int:
    _check_datatype(tensor)
    if tensor.shape[:1] and tensor.shape[0] >= 0 and tensor.shape[1:] in ((), (1,)):
        return tensor.shape[0]
    raise errors.InvalidInput(errors.WRONG_SHAPE.format(name=repr(tensor.name), shape=_shown_shape(tensor),
                                                 expected="[n] or [n, 1]"))


def _check_datatype(tensor: Tensor) -> None:
    if tensor.datatype not in ITEM_SIZES:
        raise errors.InvalidInput(errors.WRONG_DATATYPE.format(name=errors.shown(tensor.name),
                                                        datatype=errors.shown(tensor.datatype)))


def _shown_shape(tensor: Tensor) -> str:
    return errors.clipped(str(list(tensor.shape)))


def _checked(tensor: Tensor) -> Matrix:
    """The tensor's values in float64, refused when any is not finite or outside the measurements' range. FP32 values
    are taken as float32 (what a client's float32 array holds), then computed in float64."""
    decoded = tensor.decode()
    values = decoded.astype(np.float64, copy=False)
    bad = ~np.isfinite(values) | (np.abs(values) > MAX_MAGNITUDE)
    if bad.any():
        index = int(np.argmax(bad))
        message = errors.V2_OUT_OF_RANGE if math.isfinite(values[index]) else errors.V2_NOT_FINITE
        raise errors.InvalidInput(message.format(name=errors.shown(tensor.name), index=index, value=values[index],
                                                 limit=MAX_MAGNITUDE))
    if tensor.datatype == "FP32" and decoded.dtype != np.float32:
        return values.astype(np.float32).astype(np.float64)
    return values
