"""Find the dataset: an explicit file, one already in data/, or a verified download of the UCI archive."""

from __future__ import annotations

from pathlib import Path

from data.download import ARCHIVE_NAME, download_archive
from data.readers import Dataset, read_dataset

DATA_DIR = Path(__file__).resolve().parent
LOCAL_NAMES = ("Dry_Bean_Dataset.arff", "Dry_Bean_Dataset.csv", ARCHIVE_NAME)


def load_dataset(path: Path | None, url: str, data_dir: Path = DATA_DIR) -> Dataset:
    """The dataset from `path` if given, else a file already in `data_dir`, else a verified download."""
    if path is not None:
        return read_dataset(path)
    for name in LOCAL_NAMES:
        if (data_dir / name).is_file():
            return read_dataset(data_dir / name)
    return read_dataset(download_archive(url, data_dir))
