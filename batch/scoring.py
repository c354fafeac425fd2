"""Score a table of beans: the valid rows labelled, with probabilities and the doubts about each; the invalid rows
refused with the reason the service would give. Pure (no I/O), vectorised, shared by score.py and Spark."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from api import errors
from api.errors import MISSING_INPUTS
from data.schema import CLASSES, FEATURES, MAX_MAGNITUDE
from trust.assessment import DEFAULT_COVERAGE, assess

if TYPE_CHECKING:
    from model.classifier import Classifier

LABEL, REASON = "label", "reason"
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"probability_{variety}" for variety in CLASSES)
PREDICTION_SET, NEEDS_REVIEW, CONSISTENT, IN_DISTRIBUTION = ("prediction_set", "needs_review", "consistent",
                                                             "in_distribution")
# Every prediction set's text, by its bit mask over CLASSES (bit i: CLASSES[i] is in the set).
SET_TEXTS: tuple[str, ...] = tuple(",".join(variety for i, variety in enumerate(CLASSES) if mask >> i & 1)
                                   for mask in range(1 << len(CLASSES)))
MISSING_VALUE = "row {row}, feature {feature}: no value; each bean needs all 16 features"

# A value's problem, checked in this order; the first problem of a row's first bad feature is its reason.
_FINE, _MISSING, _NOT_A_NUMBER, _NOT_FINITE, _OUT_OF_RANGE = range(5)


def check_header(columns: Iterable[object]) -> None:
    """ValueError with the service's message (V2's, naming the missing inputs) unless every feature is a column."""
    present = {str(column) for column in columns}
    missing = [name for name in FEATURES if name not in present]
    if missing:
        raise ValueError(MISSING_INPUTS.format(names=", ".join(repr(name) for name in missing)))


def score_frame(classifier: Classifier, frame: pd.DataFrame, *,
                coverage: float = DEFAULT_COVERAGE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored, rejects): the valid rows with every input column kept (features as float64) plus `label`, one
    `probability_<VARIETY>` column per variety and the trust fields the model has; the invalid rows with every input
    column kept plus `reason`. Rows are numbered in reasons by the frame's integer index, counted from 0 (row =
    index + 1): a reader gives each chunk its rows' places in the file."""
    valid, rows, rejects = split_valid(frame)
    if not len(rows):
        return _empty_predictions(valid, sets=classifier.conformal is not None,
                                  in_distribution=classifier.ood is not None), rejects
    labels, scores = classifier.classify(rows)
    probabilities = classifier.probabilities(scores)
    assessment = assess(classifier, rows, labels, probabilities, coverage)
    order = [classifier.classes.index(variety) for variety in CLASSES]
    sets = None if assessment.sets is None else joined_sets(assessment.sets, classifier.classes)
    predictions = Predictions(label_categories(labels), probabilities[:, order], sets, assessment.needs_review,
                              assessment.consistent, assessment.in_distribution)
    return with_predictions(valid, predictions), rejects


def split_valid(frame: pd.DataFrame) -> tuple[pd.DataFrame, npt.NDArray[np.float64], pd.DataFrame]:
    """(valid rows, their features as a matrix, refused rows with their `reason`); ValueError when a feature is not
    a column (check_header's message)."""
    check_header(frame.columns)
    values, problems = _parsed_features(frame)
    bad = np.zeros(len(frame), dtype=np.bool_) if problems is None else np.asarray(problems.any(axis=1))
    rejects = frame[bad].assign(**{REASON: [] if problems is None else _reasons(frame, bad, problems)})
    if rejects.empty and all(frame[name].dtype == np.float64 for name in FEATURES):
        return frame, values, rejects  # the common case, without copying the chunk
    valid = frame[~bad].copy()
    rows = values[~bad]
    valid[list(FEATURES)] = rows
    return valid, rows, rejects


@dataclass(frozen=True)
class Predictions:
    """What the model says of the valid rows, from the model or from a service: probabilities in CLASSES order;
    `sets` and `in_distribution` None where the model has none. Labels and sets are categorical (a few distinct
    texts: 20x cheaper to build and to write than a column of strings)."""

    labels: pd.Categorical
    probabilities: npt.NDArray[np.float64]
    sets: pd.Categorical | None
    needs_review: npt.NDArray[np.bool_]
    consistent: npt.NDArray[np.bool_]
    in_distribution: npt.NDArray[np.bool_] | None


def with_predictions(valid: pd.DataFrame, predictions: Predictions) -> pd.DataFrame:
    """The valid rows with their label, probabilities and, where the model has them, the trust fields."""
    added: dict[str, Any] = {LABEL: predictions.labels}
    added.update(zip(PROBABILITY_COLUMNS, predictions.probabilities.T, strict=True))
    if predictions.sets is not None:
        added[PREDICTION_SET] = predictions.sets
    added[NEEDS_REVIEW] = predictions.needs_review
    added[CONSISTENT] = predictions.consistent
    if predictions.in_distribution is not None:
        added[IN_DISTRIBUTION] = predictions.in_distribution
    scored = valid.copy(deep=False)  # the input's columns shared: concat copied them all into one block (10x slower)
    for name, column in added.items():
        scored.insert(len(scored.columns), name, column, allow_duplicates=True)
    return scored


def label_categories(labels: npt.NDArray[Any]) -> pd.Categorical:
    """Labels (the model's text) as a categorical of the varieties: one hash lookup per label, 3x faster than
    comparing the labels with each variety."""
    categorical = pd.Categorical(labels, categories=list(CLASSES))
    if (categorical.codes < 0).any():
        raise ValueError(f"labels other than the varieties {', '.join(CLASSES)}")
    return categorical


def set_categories(sets: npt.NDArray[Any]) -> pd.Categorical:
    """Prediction sets as V2 sends them (varieties comma-joined) as a categorical of every possible set."""
    return pd.Categorical(sets, categories=SET_TEXTS)


def joined_sets(sets: npt.NDArray[np.bool_], classes: tuple[str, ...]) -> pd.Categorical:
    """Each prediction set's varieties comma-joined in CLASSES order, as V2 joins them ("" for none): each set read
    as a bit mask, the code of its text among the 2^7 possible."""
    if classes != CLASSES:
        raise ValueError(f"a model of the varieties {', '.join(classes)}, not {', '.join(CLASSES)}")
    return pd.Categorical.from_codes(sets.astype(np.int64) @ (1 << np.arange(len(CLASSES), dtype=np.int64)),
                                     categories=SET_TEXTS)


def _empty_predictions(valid: pd.DataFrame, *, sets: bool, in_distribution: bool) -> pd.DataFrame:
    """No valid rows: the same columns, empty, so every chunk's output has one shape."""
    empty_bools = np.zeros(0, dtype=np.bool_)
    return with_predictions(valid, Predictions(
        label_categories(np.zeros(0, dtype=object)), np.zeros((0, len(CLASSES))),
        set_categories(np.zeros(0, dtype=object)) if sets else None,
        empty_bools, empty_bools, empty_bools if in_distribution else None))


def _parsed_features(frame: pd.DataFrame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8] | None]:
    """The features as a float matrix (NaN where unusable) and each value's problem code (0: fine), None when every
    value is fine, as in a clean file."""
    values = np.empty((len(frame), len(FEATURES)), dtype=np.float64)
    not_a_number = np.zeros(values.shape, dtype=np.bool_)
    for j, name in enumerate(FEATURES):  # column by column: 3x faster than taking the features' block and transposing
        column = frame[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        values[:, j], not_a_number[:, j] = _parsed_column(column, numeric=numeric)
    with np.errstate(invalid="ignore"):
        if (np.abs(values) <= MAX_MAGNITUDE).all():  # no NaN, infinity or outlier: one pass, not the select's ten
            return values, None
        finite = np.isfinite(values)
        out_of_range = finite & (np.abs(values) > MAX_MAGNITUDE)
    missing = np.isnan(values) & ~not_a_number
    problems = np.select([missing, not_a_number, ~finite, out_of_range],
                         [_MISSING, _NOT_A_NUMBER, _NOT_FINITE, _OUT_OF_RANGE], _FINE).astype(np.int8)
    return values, problems


def _parsed_column(column: pd.Series, *, numeric: bool) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """One column's numbers (NaN where missing or unusable) and which values are not numbers: text (a CSV column
    holding "abc") counts as a number where it parses as one; blank text is missing."""
    if numeric:
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), dtype=np.bool_)
    missing = column.isna().to_numpy() | column.map(_blank, na_action="ignore").eq(True).to_numpy(dtype=bool)
    numbers = pd.to_numeric(column.mask(missing), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return numbers, np.isnan(numbers) & ~missing


def _blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


def _reasons(frame: pd.DataFrame, bad: npt.NDArray[np.bool_], problems: npt.NDArray[np.int8]) -> list[str]:
    """Each refused row's first problem, as the service words it (a loop over the refused rows only)."""
    numbers = _row_numbers(frame)
    reasons = []
    for position in np.flatnonzero(bad):
        codes = problems[position]
        j = int(np.flatnonzero(codes)[0])
        feature, code, row = FEATURES[j], int(codes[j]), int(numbers[position])
        value = frame[feature].iloc[position]
        if code == _MISSING:
            reasons.append(MISSING_VALUE.format(row=row, feature=feature))
        elif code == _NOT_A_NUMBER:
            shown = json.dumps(value) if isinstance(value, str) else str(value)
            reasons.append(errors.NOT_A_NUMBER.format(row=row, feature=feature, value=errors.clipped(shown)))
        elif code == _NOT_FINITE:
            reasons.append(errors.NOT_FINITE.format(row=row, feature=feature, value=errors.clipped(str(value))))
        else:
            reasons.append(errors.OUT_OF_RANGE.format(row=row, feature=feature, value=errors.clipped(str(value)),
                                                      limit=MAX_MAGNITUDE))
    return reasons


def _row_numbers(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Rows numbered from 1 by an integer index (their place in the file), else by their place in the frame."""
    if pd.api.types.is_integer_dtype(frame.index):
        return frame.index.to_numpy(dtype=np.int64) + 1
    return np.arange(1, len(frame) + 1, dtype=np.int64)
