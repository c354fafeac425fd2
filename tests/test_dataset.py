"""Dataset acquisition: every format, the download path over real HTTP, and every kind of bad file."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from data.acquire import load_dataset
from data.download import ARCHIVE_NAME
from data.readers import DatasetError, read_dataset
from data.schema import ARFF_SHA256, CLASSES, FEATURES, ROWS


def _zip_with_arff(arff: bytes) -> bytes:
    """A zip laid out like the UCI archive: a folder holding the ARFF and an XLSX."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("DryBeanDataset/Dry_Bean_Dataset.arff", arff)
        archive.writestr("DryBeanDataset/Dry_Bean_Dataset.xlsx", b"not read")
    return buffer.getvalue()


@pytest.fixture
def serve_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a directory; yields the directory and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_csv_arff_and_zip_read_to_the_same_dataset(shared_csv: Path, shared_arff: Path, tmp_path: Path) -> None:
    zipped = tmp_path / "uci.zip"
    zipped.write_bytes(_zip_with_arff(shared_arff.read_bytes()))
    datasets = [read_dataset(p) for p in (shared_csv, shared_arff, zipped)]
    for dataset in datasets:
        assert dataset.rows == ROWS
        assert tuple(dataset.features.columns) == FEATURES
        assert (dataset.features.dtypes == "float64").all()
        assert set(dataset.labels) == set(CLASSES)
        assert dataset.sha256 == hashlib.sha256(dataset.source.read_bytes()).hexdigest()
    csv, arff, from_zip = datasets
    assert (csv.labels == arff.labels).all()
    # The CSV rounds what the ARFF holds at full precision.
    assert ((csv.features - arff.features).abs() <= 1e-6 * arff.features.abs().clip(lower=1)).all().all()
    assert from_zip.features.equals(arff.features)


def test_download_fetches_verifies_and_keeps_the_archive(shared_arff: Path, serve_dir: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    www, base = serve_dir
    (www / "dry+bean+dataset.zip").write_bytes(_zip_with_arff(shared_arff.read_bytes()))
    data_dir = tmp_path / "data"
    dataset = load_dataset(None, f"{base}/dry+bean+dataset.zip", data_dir)
    assert dataset.rows == ROWS
    assert dataset.source == data_dir / ARCHIVE_NAME
    assert hashlib.sha256(shared_arff.read_bytes()).hexdigest() == ARFF_SHA256
    # Next time the file in data/ is used: the server is not asked again.
    (www / "dry+bean+dataset.zip").unlink()
    assert load_dataset(None, f"{base}/dry+bean+dataset.zip", data_dir).rows == ROWS
    assert [p.name for p in data_dir.iterdir()] == [ARCHIVE_NAME]


def test_download_with_wrong_checksum_is_refused_and_not_kept(shared_arff: Path, serve_dir: tuple[Path, str],
                                                              tmp_path: Path) -> None:
    www, base = serve_dir
    tampered = shared_arff.read_bytes().replace(b"28395,", b"28396,", 1)
    (www / "dry+bean+dataset.zip").write_bytes(_zip_with_arff(tampered))
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset(None, f"{base}/dry+bean+dataset.zip", data_dir)
    assert list(data_dir.iterdir()) == []


def test_download_of_a_truncated_archive_is_refused(shared_arff: Path, serve_dir: tuple[Path, str],
                                                    tmp_path: Path) -> None:
    www, base = serve_dir
    (www / "dry+bean+dataset.zip").write_bytes(_zip_with_arff(shared_arff.read_bytes())[:50_000])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(None, f"{base}/dry+bean+dataset.zip", tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_download_says_how_to_use_a_local_file(serve_dir: tuple[Path, str], tmp_path: Path) -> None:
    _, base = serve_dir
    with pytest.raises(DatasetError, match="set DRYBEAN_DATA"):
        load_dataset(None, f"{base}/missing.zip", tmp_path / "data")


def test_an_explicit_path_wins_over_files_in_the_data_dir(shared_csv: Path, tmp_path: Path) -> None:
    (tmp_path / "Dry_Bean_Dataset.csv").write_text("broken")
    assert load_dataset(shared_csv, "http://127.0.0.1:9/unused", tmp_path).source == shared_csv
    with pytest.raises(DatasetError):
        load_dataset(None, "http://127.0.0.1:9/unused", tmp_path)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _csv_lines(shared_csv: Path, n: int = 5) -> list[str]:
    return shared_csv.read_text().splitlines()[: n + 1]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: [line.split(",", 1)[1] for line in lines], "missing column(s) Area"),
        (lambda lines: [lines[0].replace("Area,Perimeter", "Perimeter,Area"), *lines[1:]], "in that order"),
        (lambda lines: [lines[0], lines[1].replace("610.291", "six hundred"), *lines[2:]],
         "row 1, column Perimeter: 'six hundred' is not a finite number"),
        (lambda lines: [*lines[:3], lines[3].replace("SEKER", "PINTO")], "unknown class(es) 'PINTO'"),
        (lambda lines: [lines[0], lines[1].replace("28395,", ","), *lines[2:]],
         "row 1, column Area: (missing) is not a finite number"),
        (lambda lines: [lines[0], lines[1].replace("28395,", "inf,"), *lines[2:]],
         "row 1, column Area: 'inf' is not a finite number"),
        (lambda lines: lines[:1], "has a header but no rows"),
    ],
    ids=["missing-column", "columns-out-of-order", "text-in-numeric", "unknown-class", "missing-value",
         "infinite-value", "header-only"],
)
def test_bad_csv_gets_one_clear_message(shared_csv: Path, tmp_path: Path, edit, message: str) -> None:
    path = _write(tmp_path, "beans.csv", "\n".join(edit(_csv_lines(shared_csv))) + "\n")
    with pytest.raises(DatasetError) as caught:
        read_dataset(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is empty"):
        read_dataset(_write(tmp_path, "beans.csv", ""))


def test_truncated_zip(shared_arff: Path, tmp_path: Path) -> None:
    path = tmp_path / "beans.zip"
    path.write_bytes(_zip_with_arff(shared_arff.read_bytes())[:-100])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_dataset(path)


def test_zip_without_arff(tmp_path: Path) -> None:
    path = tmp_path / "beans.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    with pytest.raises(DatasetError, match=r"holds no \.arff"):
        read_dataset(path)


def test_corrupt_arff(shared_arff: Path, tmp_path: Path) -> None:
    text = shared_arff.read_text()
    path = _write(tmp_path, "beans.arff", text.replace("@ATTRIBUTE Perimeter\tREAL", "@ATTRIBUTE Perimeter\tWHAT"))
    with pytest.raises(DatasetError, match="is not valid ARFF"):
        read_dataset(path)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot be read"):
        read_dataset(tmp_path / "absent.csv")
    with pytest.raises(DatasetError, match=r"unsupported format \.xlsx"):
        read_dataset(_write(tmp_path, "beans.xlsx", "x"))
