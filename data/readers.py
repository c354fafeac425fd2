"""Read a Dry Bean dataset from CSV, ARFF or the UCI zip, and check it is what training expects."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import arff

from data.schema import CLASSES, FEATURES, LABEL


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
    return Dataset(features, labels, path, hashlib.sha256(raw).hexdigest())


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
    if columns != expected:
        raise DatasetError(path, f"columns must be exactly {', '.join(expected)} in that order, "
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


def _first_true(mask: pd.DataFrame) -> tuple[int, str]:
    rows, cols = np.nonzero(mask.to_numpy())
    first = int(np.argmin(rows * mask.shape[1] + cols))
    return int(rows[first]), str(mask.columns[cols[first]])
