"""python -m photos extract PHOTOS_DIR --output beans.csv: photos of beans to rows of the Dry Bean dataset."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from api import errors
from photos.extract import extract
from photos.segment import BACKGROUNDS


def positive(text: str) -> float:
    """A finite number above 0, for argparse."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m photos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("extract", help="measure every bean in a folder of photos into a CSV",
                                  description="PHOTOS_DIR holds one folder per variety (its name, upper-cased, is "
                                              "the Class), each with PNG or JPEG photos. Exit code 1 if any photo "
                                              "was refused.")
    command.add_argument("photos_dir", type=Path, metavar="PHOTOS_DIR")
    command.add_argument("--output", type=Path, required=True, help="the CSV to write")
    scale = command.add_mutually_exclusive_group()
    scale.add_argument("--pixels-per-mm", type=positive, help="the photos' scale, when known")
    scale.add_argument("--disc-mm", type=positive,
                       help="diameter of a flat calibration disc photographed with the beans, which gives the scale")
    command.add_argument("--background", choices=BACKGROUNDS, help="default: decided from each photo's edges")
    args = parser.parse_args(argv)
    try:
        extraction = extract(args.photos_dir, args.output, pixels_per_mm=args.pixels_per_mm, disc_mm=args.disc_mm,
                             background=args.background)
    except (errors.PhotoRefused, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(extraction.summary(args.output))
    return 1 if extraction.refused else 0


if __name__ == "__main__":
    sys.exit(main())
