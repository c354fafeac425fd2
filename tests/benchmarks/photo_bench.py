"""read_photo on a 12-megapixel photo of 50 beans, on one thread (issue #24's target: under 1 s), and with --url the
whole answer of a running service's POST /v1/photos (upload, measuring, classifying; store false).

    python tests/benchmarks/photo_bench.py [--beans 50] [--pairs 5] [--runs 5] [--url http://localhost:3000]

The photo (4000 x 3000, light background, blur 1.5, noise 8) is drawn by tests/synthetic_photos.py from held-out
rows at the dataset's own pixel scale (areas 20k-250k pixels), `--pairs` of them as pairs of touching beans, and
encoded as PNG and as JPEG. Reported: the median wall and CPU seconds of read_photo, and of its stages.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy is imported
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from data.schema import FEATURES  # noqa: E402
from photos.decode import decode  # noqa: E402
from photos.measure import MeasuredBean, measure  # noqa: E402
from photos.pipeline import MAX_BYTES, read_photo  # noqa: E402
from photos.segment import Region, segment  # noqa: E402
from tests.synthetic_photos import held_out_rows, render, scatter  # noqa: E402

WIDTH, HEIGHT = 4000, 3000


def timed(function: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds over `runs` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def measure_all(regions: list[Region]) -> list[MeasuredBean]:
    return [measure(region) for region in regions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beans", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=5, help="how many pairs of the beans touch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", help="also time POST /v1/photos on the service at this URL (one worker: one core)")
    args = parser.parse_args()
    rows = held_out_rows(args.beans, seed=2024)[list(FEATURES)].to_numpy()
    drawn = render(scatter(rows, WIDTH, HEIGHT, pairs=args.pairs, seed=1), WIDTH, HEIGHT, blur=1.5, noise=8.0)
    print(f"{args.beans} beans ({args.pairs} touching pairs, areas {rows[:, 0].min():.0f}-{rows[:, 0].max():.0f} "
          f"px) in {WIDTH} x {HEIGHT}; median of {args.runs} runs, one thread\n")
    print("| photo | read_photo wall (s) | CPU (s) | decode (s) | segment (s) | measure (s) | beans found |")
    print("|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for image_format in ("PNG", "JPEG"):
            data = drawn.encode(image_format)
            wall, cpu, photo = timed(partial(read_photo, data), args.runs)
            _, decoding, image = timed(partial(decode, data, max_bytes=MAX_BYTES), args.runs)
            _, segmenting, regions = timed(partial(segment, image), args.runs)
            _, measuring, _ = timed(partial(measure_all, regions), args.runs)
            print(f"| {image_format}, {len(data) / 1e6:.1f} MB | {wall:.3f} | {cpu:.3f} | {decoding:.3f} | "
                  f"{segmenting:.3f} | {measuring:.3f} | {len(photo.beans)} |")
    if args.url:
        print(f"\n| photo | POST {args.url}/v1/photos, whole answer (s) | beans answered |\n|---|---|---|")
        for image_format in ("PNG", "JPEG"):
            wall, _, beans = timed(partial(answered_beans, args.url, drawn.encode(image_format)), args.runs)
            print(f"| {image_format} | {wall:.3f} | {beans} |")


def answered_beans(url: str, data: bytes) -> int:
    """POST the photo (store false); the number of beans answered."""
    answer = httpx.post(f"{url}/v1/photos", files={"image": ("beans", data)}, data={"store": "false"}, timeout=60)
    answer.raise_for_status()
    return len(answer.json()["beans"])


if __name__ == "__main__":
    main()
