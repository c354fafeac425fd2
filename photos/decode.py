"""PNG or JPEG bytes to a grey-level image, with the size limits checked before any pixel is decoded."""

from __future__ import annotations

import io
import struct

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from api import errors

MAX_MEGAPIXELS = 40.0
MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I"}  # 16-bit grey PNGs (Pillow reads some as 32-bit "I")


def image_format(data: bytes) -> str:
    """"PNG" or "JPEG", from the first bytes."""
    for magic, name in MAGIC.items():
        if data.startswith(magic):
            return name
    raise errors.PhotoRefused(errors.PHOTO_NOT_AN_IMAGE)


def _check_size(width: int, height: int, max_megapixels: float) -> None:
    if width * height == 0:
        raise errors.PhotoRefused(errors.PHOTO_NO_PIXELS.format(width=width, height=height))
    if width * height > max_megapixels * 1e6:
        raise errors.PhotoRefused(errors.PHOTO_TOO_MANY_PIXELS.format(megapixels=width * height / 1e6, width=width,
                                                                      height=height, limit=max_megapixels))


def decode(data: bytes, *, max_bytes: int, max_megapixels: float = MAX_MEGAPIXELS) -> NDArray[np.uint8]:
    """The photo's grey levels, (height, width) uint8, upright by its EXIF orientation."""
    if not data:
        raise errors.PhotoRefused(errors.PHOTO_EMPTY)
    if len(data) > max_bytes:
        raise errors.PhotoRefused(errors.PHOTO_TOO_LARGE.format(megabytes=len(data) / 1e6, limit=max_bytes / 1e6))
    name = image_format(data)
    if name == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":  # a fixed place: checked before Pillow parses
        declared_width, declared_height = struct.unpack(">II", data[16:24])
        _check_size(declared_width, declared_height, max_megapixels)
    try:
        image = Image.open(io.BytesIO(data), formats=[name])  # reads the header only
    except Image.DecompressionBombError as exc:
        raise errors.PhotoRefused(errors.PHOTO_DECLARES_TOO_MANY_PIXELS.format(
            megapixels=2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6, limit=max_megapixels)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise errors.PhotoRefused(errors.PHOTO_HEADER_DAMAGED.format(format=name)) from exc
    _check_size(*image.size, max_megapixels)
    if name == "JPEG":
        image.draft("L", image.size)  # the decoder's own luma: no colour conversion, then none to grey
    try:
        upright = ImageOps.exif_transpose(image)
        if upright.mode in _SIXTEEN_BIT_MODES:
            levels = np.asarray(upright, dtype=np.float64)
            return np.clip(np.rint(levels / 257.0), 0, 255).astype(np.uint8)
        return np.asarray(upright.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise errors.PhotoRefused(errors.PHOTO_DATA_DAMAGED.format(format=name, reason=exc)) from exc
