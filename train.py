"""Train the Dry Bean classifier and save it to the BentoML model store as `drybean_svc`.

    DRYBEAN_DATA=../shared/data/Dry_Bean_Dataset.csv python train.py [--output var/training] [--min-accuracy 0.92]
        [--kernel {linear,rbf}] [--C 1.0] [--feedback] [--require-better]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from config import get_settings
from model.figures import drawing_figures

KERNELS = ("linear", "rbf")  # model/training.py's build_pipeline takes either


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="dataset file (CSV, ARFF or UCI zip); default: $DRYBEAN_DATA, "
                                                  "then a file in data/, then a download")
    parser.add_argument("--output", type=Path, help="where metrics.json and the figures go; default: training/ "
                        "in DRYBEANS_STATE_DIR (var/training)")
    parser.add_argument("--min-accuracy", type=float, default=0.92, help="holdout accuracy below which the "
                                                                         "model is not saved (exit code 1)")
    parser.add_argument("--kernel", choices=KERNELS, default="linear", help="the SVC's kernel: linear (compiled and "
                        "explained when served) or rbf (served by scikit-learn, without explanations)")
    parser.add_argument("--C", type=positive, default=1.0, help="the SVC's regularisation C (> 0; larger fits the "
                                                               "training beans more closely)")
    parser.add_argument("--feedback", action="store_true", help="add the recorded beans whose true variety was "
                        "reported (the service's database: DATABASE_URL or MYSQL_*) to the training part; the "
                        "holdout stays the dataset's")
    parser.add_argument("--require-better", action="store_true", help="save only a model more accurate than the "
                        "champion (the newest drybean_svc in the store) on the same holdout; else exit code 1")
    return parser.parse_args(argv)


def positive(text: str) -> float:
    """A finite number above 0, for --C."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """Load, fit, evaluate, gate and save, while another process draws the figures; return the exit code."""
    args = parse_args(argv)
    args.output = args.output or get_settings().state_dir / "training"
    args.output.mkdir(parents=True, exist_ok=True)
    with drawing_figures(args.output) as figures:
        # Imported only now: the figures' process imports matplotlib meanwhile, on the other core.
        from model.training import train

        return train(args, figures)


if __name__ == "__main__":
    sys.exit(main())
