"""A folder of photos, one sub-folder per variety, to a CSV of beans in the dataset's schema."""

from __future__ import annotations

import csv
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from api import errors
from data.schema import FEATURES, LABEL
from photos.pipeline import read_photo
from photos.segment import Background

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg"}
COLUMNS = (*FEATURES, LABEL, "photo", "pixels_per_mm")


@dataclass
class Extraction:
    """What one run read and wrote."""

    photos: int = 0
    beans: Counter[str] = field(default_factory=Counter)  # per variety
    refused: list[tuple[str, str]] = field(default_factory=list)  # (photo, why)

    def summary(self, output: Path) -> str:
        varieties = ", ".join(f"{name} {count}" for name, count in sorted(self.beans.items())) or "none"
        return (f"{self.photos} photos, {sum(self.beans.values())} beans ({varieties}), {len(self.refused)} "
                f"refused -> {output}")


def photos_by_variety(photos_dir: Path) -> list[tuple[str, Path]]:
    """(variety, photo) for every PNG or JPEG photo in the folder's sub-folders; the variety is the sub-folder's
    name, upper-cased."""
    if not photos_dir.is_dir():
        raise errors.PhotoRefused(errors.PHOTOS_NOT_A_FOLDER.format(path=photos_dir))
    found = [(folder.name.upper(), photo)
             for folder in sorted(path for path in photos_dir.iterdir() if path.is_dir())
             for photo in sorted(folder.iterdir()) if photo.is_file() and photo.suffix.lower() in PHOTO_SUFFIXES]
    if not found:
        raise errors.PhotoRefused(errors.PHOTOS_NONE_FOUND.format(path=photos_dir))
    return found


def extract(photos_dir: Path, output: Path, *, pixels_per_mm: float | None = None, disc_mm: float | None = None,
            background: Background | None = None) -> Extraction:
    """Measure every photo and write its beans, one row each; photos that cannot be measured are skipped, with
    why, on stderr and in the result."""
    extraction = Extraction()
    photos = photos_by_variety(photos_dir)
    common: float | None = None
    with output.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for variety, path in photos:
            name = path.relative_to(photos_dir).as_posix()
            try:
                photo = read_photo(path.read_bytes(), background=background, pixels_per_mm=pixels_per_mm,
                                   disc_mm=disc_mm)
            except (errors.PhotoRefused, OSError) as exc:
                extraction.refused.append((name, str(exc)))
                print(f"refused {name}: {exc}", file=sys.stderr)
                continue
            extraction.photos += 1
            extraction.beans[variety] += len(photo.beans)
            # One scale for the whole file (train.py records it in the model): the first photo's, every other
            # photo's beans converted to it (photos with a calibration disc each find their own).
            common = photo.pixels_per_mm if common is None else common
            scale = "" if common is None else repr(common)
            rows = photo.rows(common) if common is not None else photo.rows()
            writer.writerows([*(repr(float(value)) for value in row), variety, name, scale] for row in rows)
    return extraction
