"""Dataset acquisition: find, download, read and validate the UCI Dry Bean dataset."""

from __future__ import annotations

from pathlib import Path

from data.download import ARCHIVE_NAME, download_archive
from data.readers import Dataset, DatasetError, read_dataset
from data.schema import CLASSES, FEATURES, LABEL

DATA_DIR = Path(__file__).resolve().parent
LOCAL_NAMES = ("Dry_Bean_Dataset.arff", "Dry_Bean_Dataset.csv", ARCHIVE_NAME)

__all__ = ["CLASSES", "DATA_DIR", "FEATURES", "LABEL", "Dataset", "DatasetError", "load_dataset",
           "read_dataset"]


def load_dataset(path: Path | None, url: str, data_dir: Path = DATA_DIR) -> Dataset:
    """The dataset from `path` if given, else a file already in `data_dir`, else a verified download."""
    if path is not None:
        return read_dataset(path)
    for name in LOCAL_NAMES:
        if (data_dir / name).is_file():
            return read_dataset(data_dir / name)
    return read_dataset(download_archive(url, data_dir))
