"""The binary tensor data extension of V2 over REST (Triton's `extension_binary_data.md`, as KServe implements it).

A request whose `Inference-Header-Content-Length` header is N holds its JSON in the body's first N bytes; each input
with the parameter `binary_data_size` takes that many bytes of the rest, in the inputs' order, little-endian, row
major. Outputs asked for with `binary_data: true` (or all of them, with the request parameter `binary_data_output`)
are answered the same way: their bytes follow the JSON, whose length the answer's header gives, and BYTES elements
are each a 4-byte little-endian length, then the bytes.

Every size is checked against the body and against the tensor's shape and datatype before a byte of it is read; the
tensors' bytes are read in place, never copied whole.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.types import Scope

from api import errors
from protocol import arrays

HEADER = "inference-header-content-length"
SIZE = "binary_data_size"
OUTPUT = "binary_data"
ALL_OUTPUTS = "binary_data_output"



def split(body: bytes, declared: str) -> tuple[bytes, memoryview]:
    """The JSON and the binary part of a request body, by the value of its Inference-Header-Content-Length."""
    length = int(declared) if declared.isdigit() and len(declared) <= 12 else -1
    if not 0 < length <= len(body):
        raise errors.InvalidInput(errors.BAD_HEADER.format(given=errors.shown(declared), size=len(body)))
    return body[:length], memoryview(body)[length:]


def json_scope(scope: Scope) -> Scope:
    """The request's ASGI scope as the JSON part alone would be sent: declared application/json."""
    headers = [(name, value) for name, value in scope["headers"] if name not in (b"content-type", b"content-length")]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def binary_size(name: str, parameters: Mapping[str, object] | None) -> int | None:
    """The input's `binary_data_size`, or None when its data is in the JSON."""
    size = (parameters or {}).get(SIZE)
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise errors.InvalidInput(errors.BAD_SIZE.format(name=errors.shown(name), given=errors.shown(size)))
    return size


def tensor(name: str, datatype: str, shape: Sequence[int], size: int, data: memoryview, offset: int,
           ) -> arrays.Tensor:
    """The input whose `size` bytes start at `offset` of the binary part; its size is checked against its shape and
    datatype before a byte of it is read."""
    if offset + size > len(data):
        raise errors.InvalidInput(errors.PAST_THE_BODY.format(name=errors.shown(name), size=size,
                                                              left=len(data) - offset))

    def decode() -> npt.NDArray[np.floating[Any]]:
        expected = math.prod(shape) * arrays.ITEM_SIZES[datatype]
        if size != expected:
            raise errors.InvalidInput(errors.SIZE_MISMATCH.format(name=errors.shown(name), size=size, shape=list(shape),
                                                           datatype=datatype, expected=expected))
        return np.frombuffer(data[offset:offset + size], dtype=arrays.DTYPES[datatype])

    return arrays.Tensor(name, datatype, tuple(shape), decode)


def check_consumed(data: memoryview, used: int) -> None:
    """Refuse binary bytes that no input claimed."""
    if used != len(data):
        raise errors.InvalidInput(errors.TRAILING_BYTES.format(count=len(data) - used))


def flag(name: str, parameters: Mapping[str, object] | None, default: bool = False) -> bool:
    """A boolean parameter of the extension (`binary_data`, `binary_data_output`)."""
    value = (parameters or {}).get(name, default)
    if type(value) is not bool:
        raise errors.InvalidInput(errors.V2_NOT_BOOLEAN.format(name=name))
    return value


def length_prefixed(elements: Sequence[bytes]) -> bytes:
    """BYTES elements as the binary format sends them: each a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def body(json_part: bytes, binary_parts: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """An answer's body and the headers that tell where its JSON ends (none when nothing is binary)."""
    if not binary_parts:
        return json_part, {}
    return b"".join((json_part, *binary_parts)), {HEADER: str(len(json_part))}
