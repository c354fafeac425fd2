"""train.py's figures, a confusion matrix and a reliability diagram, drawn in a process of their own.

Importing matplotlib and drawing both figures took 1.2 s of train.py's 5.5 on one core while the other idled.
`drawing_figures` starts `python model/figures.py OUTPUT` at once, so that the import overlaps training, and
`Figures.draw` sends it the holdout's arrays when they are ready; train.py waits for it before it exits.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

RELIABILITY_BINS = 10
CONFUSION_MATRIX = "confusion_matrix.png"
RELIABILITY = "reliability.png"


class FiguresFailed(RuntimeError):
    """The drawing process failed; its error is on stderr."""


class Figures:
    """The drawing process, waiting for its arrays."""

    def __init__(self, stdin: IO[bytes]) -> None:
        self._stdin = stdin

    def draw(self, *, confusion_matrix: list[list[int]], classes: list[str], accuracy: float, macro_f1: float,
             probabilities: npt.NDArray[np.float64], y_true: npt.NDArray[Any]) -> None:
        """Send the arrays: the process draws both figures into the output directory."""
        arrays = io.BytesIO()
        np.savez(arrays, confusion_matrix=np.asarray(confusion_matrix), classes=np.asarray(classes, dtype=str),
                 scores=np.array([accuracy, macro_f1]), probabilities=probabilities,
                 y_true=np.asarray(y_true, dtype=str))
        self._stdin.write(arrays.getvalue())
        self._stdin.close()


@contextmanager
def drawing_figures(output: Path) -> Iterator[Figures]:
    """A drawing process for the figures in `output`; on leaving, wait for it (it exits at once if never asked to
    draw). FiguresFailed if it failed."""
    process = subprocess.Popen([sys.executable, __file__, str(output)], stdin=subprocess.PIPE)
    stdin = cast(IO[bytes], process.stdin)  # stdin=PIPE
    try:
        yield Figures(stdin)
    finally:
        if not stdin.closed:
            stdin.close()
        returncode = process.wait()
    if returncode != 0:
        raise FiguresFailed(f"drawing the figures in {output} failed (exit code {returncode}), see above")


def plot_confusion_matrix(counts: npt.NDArray[np.int_], classes: list[str], accuracy: float, macro_f1: float,
                          path: Path) -> Path:
    """Write a confusion matrix with counts and row-normalised shading (recall per class) as a PNG."""
    import matplotlib.pyplot as plt

    recall = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(8, 7), layout="constrained")
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted variety")
    ax.set_ylabel("true variety")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if recall[i, j] > 0.5 else "black", fontsize=9)
    ax.set_title(f"Dry beans, holdout of {counts.sum():,}: accuracy {accuracy:.3f}, macro F1 {macro_f1:.3f}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(probabilities: npt.NDArray[np.float64], y_true: npt.NDArray[Any], classes: list[str],
                     path: Path) -> Path:
    """Write a reliability diagram (confidence of the most probable variety against how often it is right) as a
    PNG, with the share of beans per confidence bin below."""
    import matplotlib.pyplot as plt

    confidence = probabilities.max(axis=1)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == y_true
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, RELIABILITY_BINS - 1)
    counts = np.bincount(bins, minlength=RELIABILITY_BINS)
    filled = counts > 0
    mean_confidence = np.bincount(bins, confidence, RELIABILITY_BINS)[filled] / counts[filled]
    accuracy = np.bincount(bins, correct, RELIABILITY_BINS)[filled] / counts[filled]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True, layout="constrained")
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.plot(mean_confidence, accuracy, marker="o", label="calibrated probabilities")
    top.set_ylabel("share correct")
    top.set_title(f"Reliability on the holdout of {len(y_true):,} beans")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], counts / counts.sum(), width=1 / RELIABILITY_BINS, align="edge", edgecolor="white")
    bottom.set_xlabel("probability of the most probable variety")
    bottom.set_ylabel("share of beans")
    bottom.set_xlim(0, 1)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    """Draw both figures into the directory `argv[1]` from the arrays on stdin; nothing when stdin is empty."""
    import matplotlib  # first: the import overlaps training, which has yet to send the arrays

    matplotlib.use("Agg")  # files only: no display on servers or in CI
    import matplotlib.pyplot

    arrays = sys.stdin.buffer.read()
    if not arrays:
        return 0
    given = np.load(io.BytesIO(arrays))
    output, classes = Path(argv[1]), given["classes"].tolist()
    accuracy, macro_f1 = given["scores"].tolist()
    plot_confusion_matrix(given["confusion_matrix"], classes, accuracy, macro_f1, output / CONFUSION_MATRIX)
    plot_reliability(given["probabilities"], given["y_true"], classes, output / RELIABILITY)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
