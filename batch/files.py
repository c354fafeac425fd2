"""Files of beans read and written a chunk at a time, by extension, so memory stays flat whatever their size.

Inputs: .csv (as the dataset ships it), .parquet, .jsonl (JSON Lines), and the UCI .arff or .zip (read whole, as
data/readers.py reads them: they are small). Outputs: .csv, .parquet or .jsonl; the refused rows go beside the output,
as `<stem>.rejects.<ext>`, created only when a row is refused.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv
from pyarrow.csv import ConvertOptions
from scipy.io import arff

from data.readers import DatasetError, arff_bytes_from_zip
from data.schema import FEATURES

INPUTS = (".csv", ".parquet", ".jsonl", ".arff", ".zip")
OUTPUTS = (".csv", ".parquet", ".jsonl")
UNSUPPORTED_INPUT = "{path}: cannot read {suffix} files; the input must be one of {formats}"
UNSUPPORTED_OUTPUT = "{path}: cannot write {suffix} files; the output must end in one of {formats}"
UNREADABLE = "{path}: cannot be read ({reason})"
SAMPLE_ROWS = 1_000  # CSV rows whose pandas types Arrow's reader then keeps
ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}  # any other: text


class FileProblem(ValueError):
    """An input that cannot be read or an output that cannot be written; the message names the file."""


@dataclass
class Source:
    """An input file opened for reading: its columns (known before any row is scored), and its rows in chunks,
    each indexed by the rows' places in the file (from 0)."""

    path: Path
    columns: list[str]
    chunks: Iterator[pd.DataFrame]
    total_rows: int | None  # known up front for Parquet, ARFF and zip
    _handle: IO[bytes] | None = field(default=None, repr=False)

    def fraction_read(self) -> float | None:
        """How much of the file the chunks so far came from, where that is not known as a row count."""
        if self._handle is None or self._handle.closed:
            return None
        size = self.path.stat().st_size
        return min(1.0, self._handle.tell() / size) if size else None

    def close(self) -> None:
        """Release the file."""
        if self._handle is not None:
            self._handle.close()


def open_source(path: Path, chunk_rows: int) -> Source:
    """The input, opened by its extension; FileProblem when the format is unknown or the file unreadable."""
    suffix = path.suffix.lower()
    if suffix not in INPUTS:
        raise FileProblem(UNSUPPORTED_INPUT.format(path=path, suffix=suffix or "(no extension)",
                                                   formats=", ".join(INPUTS)))
    try:
        if suffix == ".parquet":
            return _parquet_source(path, chunk_rows)
        if suffix in (".arff", ".zip"):
            return _whole_source(path, _arff_frame(path), chunk_rows)
        return _text_source(path, suffix, chunk_rows)
    except (OSError, ValueError, pa.ArrowException) as exc:  # DatasetError and pandas' parser errors are ValueErrors
        reason = exc.problem if isinstance(exc, DatasetError) else getattr(exc, "strerror", None) or exc
        raise FileProblem(UNREADABLE.format(path=path, reason=reason)) from None


def _text_source(path: Path, suffix: str, chunk_rows: int) -> Source:
    """CSV or JSON Lines, parsed a chunk at a time (each chunk infers its own column types: "abc" in a chunk
    leaves that chunk's column as text, which scoring refuses row by row)."""
    if suffix == ".csv":
        return _csv_source(path, chunk_rows)
    handle = path.open("rb")
    reader = pd.read_json(handle, lines=True, chunksize=chunk_rows, dtype=False, convert_dates=False)
    chunks = _numbered(iter(reader))
    first = next(chunks, None)
    columns = [] if first is None else [str(column).strip() for column in first.columns]
    return Source(path, columns, _chained(first, chunks), None, handle)


def _csv_source(path: Path, chunk_rows: int) -> Source:
    """CSV through Arrow's reader (multi-threaded, in C++: 1,000,000 beans in a fraction of pandas' time) while
    every feature parses as a number, as in any clean file; from the first block where one does not, through pandas
    a chunk at a time, so that the text stays text for scoring to refuse row by row."""
    sample = pd.read_csv(path, encoding="utf-8-sig", nrows=SAMPLE_ROWS)
    # The types pandas gives the first rows (text stays text: Arrow alone would make dates of dates), the features
    # as numbers; a later value that does not fit its column's type hands the rest of the file to pandas.
    types = {str(name): ARROW_TYPES.get(str(dtype), pa.string()) for name, dtype in sample.dtypes.items()}
    types.update({name: pa.float64() for name in FEATURES if name in types})
    handle = path.open("rb")
    chunks = _csv_chunks(path, handle, ConvertOptions(column_types=types), chunk_rows)
    return Source(path, [str(column).strip() for column in sample.columns], _numbered(chunks), None, handle)


def _csv_chunks(path: Path, handle: IO[bytes], types: ConvertOptions, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Arrow's batches gathered into chunks of `chunk_rows`; pandas' chunks from the first row Arrow refused on."""
    read = 0
    try:
        batches: list[pa.RecordBatch] = []
        for batch in csv.open_csv(handle, convert_options=types):
            batches.append(batch)
            if sum(len(each) for each in batches) >= chunk_rows:
                chunk = pa.Table.from_batches(batches).to_pandas()
                batches = []
                yield chunk
                read += len(chunk)
        if batches:
            yield pa.Table.from_batches(batches).to_pandas()
        return
    except pa.ArrowInvalid:  # a value that is not a number, or a malformed line: pandas reads (or names) it
        pass
    yield from pd.read_csv(path, encoding="utf-8-sig", chunksize=chunk_rows, skiprows=range(1, read + 1))
def _parquet_source(path: Path, chunk_rows: int) -> Source:
    """Parquet in batches, one row group at a time: a single iterator over the whole file held on to memory as it
    went (+70 MB from 200k to 1M rows), a fresh one per row group does not."""
    parquet = pq.ParquetFile(path, pre_buffer=False)
    batches = (batch.to_pandas() for group in range(parquet.num_row_groups)
               for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group]))
    return Source(path, list(parquet.schema_arrow.names), _numbered(batches), parquet.metadata.num_rows)


def _whole_source(path: Path, frame: pd.DataFrame, chunk_rows: int) -> Source:
    chunks = (frame.iloc[start:start + chunk_rows] for start in range(0, len(frame), chunk_rows))
    return Source(path, [str(column) for column in frame.columns], chunks, len(frame))


def _arff_frame(path: Path) -> pd.DataFrame:
    """An ARFF file, or the ARFF inside a UCI zip, as one frame (labels as text, not bytes)."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".zip":
        raw = arff_bytes_from_zip(path, raw)
    records, _meta = arff.loadarff(io.StringIO(raw.decode("utf-8")))
    frame = pd.DataFrame(records)
    for column in frame.select_dtypes(include="object").columns:
        frame[column] = frame[column].str.decode("utf-8")  # nominal attributes come back as bytes
    return frame


def _numbered(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks, each indexed by its rows' places in the file, with the header's names stripped of spaces."""
    start = 0
    for chunk in chunks:
        chunk.index = pd.RangeIndex(start, start + len(chunk))
        chunk.columns = [str(column).strip() for column in chunk.columns]
        start += len(chunk)
        yield chunk


def _chained(first: pd.DataFrame | None, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    if first is not None:
        yield first
        yield from rest


class Sink(Protocol):
    """A table written a chunk at a time."""

    path: Path

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows."""

    def close(self) -> None:
        """Finish the file."""


def check_output(path: Path) -> None:
    """FileProblem unless the output's extension names a format it can be written in."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUTS:
        raise FileProblem(UNSUPPORTED_OUTPUT.format(path=path, suffix=suffix or "(no extension)",
                                                    formats=", ".join(OUTPUTS)))


def rejects_path(output: Path) -> Path:
    """Where the refused rows go: beside the output, `<stem>.rejects.<ext>`."""
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


def open_sink(path: Path, *, as_text: bool = False) -> Sink:
    """A writer by the output's extension. `as_text`: every column written as text (rejects, whose columns may hold
    numbers in one chunk and text in the next; Parquet needs one type per column)."""
    check_output(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return ParquetSink(path, as_text=as_text)
    return TextSink(path, csv=suffix == ".csv")


class TextSink:
    """CSV (header once) or JSON Lines, appended chunk by chunk."""

    def __init__(self, path: Path, *, csv: bool) -> None:
        self.path = path
        self._csv = csv
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows."""
        if self._csv:
            frame.to_csv(self._handle, header=self._header, index=False)
        else:  # orjson writes each float's shortest exact form (pandas' to_json keeps at most 15 decimals)
            lines = (orjson.dumps(record, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
                     for record in frame.to_dict(orient="records"))
            self._handle.write(b"".join(line + b"\n" for line in lines).decode())
        self._header = False

    def close(self) -> None:
        """Finish the file."""
        self._handle.close()


class ParquetSink:
    """Parquet, one row group per chunk, every chunk in the first chunk's schema."""

    def __init__(self, path: Path, *, as_text: bool) -> None:
        self.path = path
        self._as_text = as_text
        self._writer: pq.ParquetWriter | None = None
        self._empty: pa.Table | None = None  # the columns, while only empty chunks came

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows."""
        if self._as_text:
            frame = frame.astype("string")
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None and not len(frame):  # its text columns would be typed null: wait for rows
            self._empty = table if self._empty is None else self._empty
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (an empty table when nothing was written, so the file is still Parquet)."""
        if self._writer is None:
            pq.write_table(self._empty if self._empty is not None else pa.table({}), self.path)
        else:
            self._writer.close()
