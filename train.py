"""Train the Dry Bean classifier and save it to the BentoML model store as `drybean_svc`.

    DRYBEAN_DATA=../shared/data/Dry_Bean_Dataset.csv python train.py [--output outputs] [--min-accuracy 0.92]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.figures import drawing_figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="dataset file (CSV, ARFF or UCI zip); default: $DRYBEAN_DATA, "
                                                  "then a file in data/, then a download")
    parser.add_argument("--output", type=Path, default=Path("outputs"), help="where metrics.json and the "
                                                                             "confusion-matrix PNG go")
    parser.add_argument("--min-accuracy", type=float, default=0.92, help="holdout accuracy below which the "
                                                                         "model is not saved (exit code 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load, fit, evaluate, gate and save, while another process draws the figures; return the exit code."""
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    with drawing_figures(args.output) as figures:
        # Imported only now: the figures' process imports matplotlib meanwhile, on the other core.
        from model.training import train

        return train(args, figures)


if __name__ == "__main__":
    sys.exit(main())
