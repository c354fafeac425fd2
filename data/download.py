"""Download the UCI Dry Bean archive and verify it before anything reads it."""

from __future__ import annotations

import hashlib
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from data.readers import DatasetError, arff_bytes_from_zip
from data.schema import ARFF_SHA256

ARCHIVE_NAME = "dry_bean_dataset.zip"
TIMEOUT_SECONDS = 60


def download_archive(url: str, directory: Path, expected_sha256: str = ARFF_SHA256) -> Path:
    """Fetch the zip into `directory`, keeping it only if its ARFF matches the published checksum."""
    target = directory / ARCHIVE_NAME
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DatasetError(target, f"DRYBEAN_DATA_URL must be an http(s) URL, not {url!r}")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".part", delete=False) as part:
        partial = Path(part.name)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310  (scheme checked above)
                while chunk := response.read(1 << 16):
                    part.write(chunk)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DatasetError(target, f"download from {url} failed ({exc}); set DRYBEAN_DATA to a local "
                                       "copy of the dataset instead") from None
    try:
        digest = hashlib.sha256(arff_bytes_from_zip(target, partial.read_bytes())).hexdigest()
        if digest != expected_sha256:
            raise DatasetError(target, f"checksum mismatch for the ARFF downloaded from {url}: "
                                       f"got {digest}, expected {expected_sha256}")
    except DatasetError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target
