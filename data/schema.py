"""What a Dry Bean dataset must look like: 16 shape features in a fixed order and 7 varieties."""

from __future__ import annotations

FEATURES: tuple[str, ...] = (
    "Area", "Perimeter", "MajorAxisLength", "MinorAxisLength", "AspectRation", "Eccentricity",
    "ConvexArea", "EquivDiameter", "Extent", "Solidity", "roundness", "Compactness",
    "ShapeFactor1", "ShapeFactor2", "ShapeFactor3", "ShapeFactor4",
)  # "AspectRation" and "roundness" are spelled as the dataset spells them.
LABEL = "Class"
CLASSES: tuple[str, ...] = ("BARBUNYA", "BOMBAY", "CALI", "DERMASON", "HOROZ", "SEKER", "SIRA")
ROWS = 13_611
# The tutorial's example bean, a DERMASON: the API's documented example, and a check train.py makes before saving.
EXAMPLE_ROW = [33958.0, 677.1, 253.69, 171.05, 1.48, 0.74, 34241.0, 207.93, 0.82, 0.99, 0.93, 0.82, 0.01, 0.0,
               0.67, 1.0]
# Beyond any measurement of a bean (areas are ~10^5 pixels, shape factors < 1), and small enough that scaling and the
# model's dot products stay finite: a value outside ±MAX_MAGNITUDE is refused, not classified.
MAX_MAGNITUDE = 1e15

# SHA-256 of the ARFF file inside the UCI archive, as published at
# https://archive.ics.uci.edu/dataset/602/dry+bean+dataset (the zip also holds an XLSX copy).
ARFF_SHA256 = "b2a4a76a2aedfb8ed415adfc1bfc70b5f202cb00cb72e500766e364c14834014"
ARFF_NAME = "Dry_Bean_Dataset.arff"
