"""Read a Dry Bean dataset from CSV, ARFF or the UCI zip, and check it is what training expects."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import arff

from data.schema import CLASSES, FEATURES, LABEL

PHOTO_COLUMNS = ("photo", "pixels_per_mm")  # optional, after the label: where a lab's beans came from


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Dataset:
    """Validated features (16 columns, float64, in `FEATURES` order), labels and where they came from."""

    features: pd.DataFrame
    labels: pd.Series
    source: Path
    sha256: str
    pixels_per_mm: float | None = None  # the features' scale, known for photos a lab measured (python -m photos)

    @property
    def rows(self) -> int:
        """Number of beans."""
        return len(self.labels)


def read_dataset(path: Path) -> Dataset:
    """Read and validate a CSV, ARFF or zip (holding an ARFF) file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, f"cannot be read ({exc.strerror})") from None
    if not raw.strip():
        raise DatasetError(path, "is empty")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = _parse_csv(path, raw)
    elif suffix == ".arff":
        frame = _parse_arff(path, raw)
    elif suffix == ".zip":
        frame = _parse_arff(path, arff_bytes_from_zip(path, raw))
    else:
        raise DatasetError(path, f"unsupported format {suffix or '(no extension)'}; use .csv, .arff or .zip")
    features, labels = validate(path, frame)
    return Dataset(features, labels, path, hashlib.sha256(raw).hexdigest(), _scale(path, frame))


def arff_bytes_from_zip(path: Path, raw: bytes) -> bytes:
    """The ARFF member of a UCI-style zip archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [name for name in archive.namelist() if name.lower().endswith(".arff")]
            if not members:
                raise DatasetError(path, "the zip archive holds no .arff file")
            return archive.read(members[0])
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise DatasetError(path, f"is not a readable zip archive (truncated or corrupt: {exc})") from None


def _parse_csv(path: Path, raw: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"is not valid CSV ({exc})") from None


def _parse_arff(path: Path, raw: bytes) -> pd.DataFrame:
    try:
        records, _meta = arff.loadarff(io.StringIO(raw.decode("utf-8")))
    except (arff.ParseArffError, ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"is not valid ARFF ({exc})") from None
    frame = pd.DataFrame(records)
    if LABEL in frame:
        # Nominal ARFF attributes come back as bytes.
        frame[LABEL] = frame[LABEL].map(lambda v: v.decode() if isinstance(v, bytes) else v)
    return frame


def validate(path: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Check columns, values and labels; return float features and string labels."""
    expected = [*FEATURES, LABEL]
    columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in expected if c not in columns]
    if missing:
        raise DatasetError(path, f"missing column(s) {', '.join(missing)}; expected {', '.join(expected)}")
    if columns[:len(expected)] != expected or not set(columns[len(expected):]) <= set(PHOTO_COLUMNS):
        raise DatasetError(path, f"columns must be exactly {', '.join(expected)} in that order (then, from "
                                 f"python -m photos extract, {' and '.join(PHOTO_COLUMNS)}), "
                                 f"found {', '.join(columns)}")
    frame = frame.set_axis(columns, axis=1)
    if frame.empty:
        raise DatasetError(path, "has a header but no rows")
    features = frame[list(FEATURES)].apply(pd.to_numeric, errors="coerce").astype("float64")
    bad = features.isna() | ~np.isfinite(features)
    if bad.to_numpy().any():
        row, column = _first_true(bad)
        value = frame[column].iloc[row]
        shown = "(missing)" if value is None or str(value).strip() in {"", "nan", "?"} else repr(value)
        raise DatasetError(path, f"row {row + 1}, column {column}: {shown} is not a finite number")
    labels = frame[LABEL].astype(str).str.strip()
    unknown = sorted(set(labels) - set(CLASSES))
    if unknown:
        raise DatasetError(path, f"unknown class(es) {', '.join(map(repr, unknown[:5]))}; "
                                 f"known: {', '.join(CLASSES)}")
    return features, labels.rename(LABEL)


def _scale(path: Path, frame: pd.DataFrame) -> float | None:
    """The features' pixels per millimetre, from the column `python -m photos extract` writes: one value for every
    row, or none."""
    if "pixels_per_mm" not in frame:
        return None
    values = set(frame["pixels_per_mm"].astype(str).str.strip())
    if values == {""}:
        return None
    try:
        scales = {float(value) for value in values}
    except ValueError:
        scales = set()
    if len(scales) != 1 or not all(math.isfinite(scale) and scale > 0 for scale in scales):
        raise DatasetError(path, f"column pixels_per_mm must hold one positive scale for every row, found "
                                 f"{', '.join(sorted(values)[:5])}: extract the photos again (python -m photos "
                                 "extract converts them all to one scale)")
    return scales.pop()


def _first_true(mask: pd.DataFrame) -> tuple[int, str]:
    rows, cols = np.nonzero(mask.to_numpy())
    first = int(np.argmin(rows * mask.shape[1] + cols))
    return int(rows[first]), str(mask.columns[cols[first]])
