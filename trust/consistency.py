"""Consistency of a bean's 16 features: 10 are exact functions of Area, Perimeter and the axes and convex area.

With A = Area, P = Perimeter, L = MajorAxisLength, l = MinorAxisLength, C = ConvexArea, every row of the dataset
satisfies the relations below to its own rounding, and the bounds that geometry sets. A bean is compared at the
precision its client sent: each value is uncertain by half a unit of the last decimal of its shortest form (at
least the dataset's own rounding), and a relation holds when the sent and implied values differ by no more than
that uncertainty plus what the measured features' rounding carries into the implied value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from data.schema import FEATURES

MEASURED = ("Area", "Perimeter", "MajorAxisLength", "MinorAxisLength", "ConvexArea")  # A, P, L, l, C
POSITIVE = (*MEASURED, "Extent", "Solidity", "roundness", "ShapeFactor4")
# The dataset's own rounding: a float that round-trips at more decimals than this resolves is still this uncertain.
DATASET_RELATIVE_PRECISION = 2e-7
# Over the first-order propagation below (which slightly underestimates for coarse rounding) and float arithmetic.
SAFETY_FACTOR = 1.5
# 10^22 is the largest power of ten a float holds exactly; only values below 1e-16 have their decimals read so far.
MAX_DECIMALS = 22
_POWERS_OF_TEN = 10.0 ** np.arange(MAX_DECIMALS + 1)
# How many (value, decimals) round trips one pass of sent_precision tests: bounds its memory, sets its passes.
_VALUES_PER_PASS = 512


class Inconsistency(BaseModel):
    """One relation or bound a bean's features break."""

    feature: str = Field(description="the feature that disagrees, named as in the dataset")
    sent: float = Field(description="the value the client sent")
    implied: float = Field(description="what the measured features imply; for a bound, the bound")
    rule: str = Field(description="the relation or bound (A = Area, P = Perimeter, L = MajorAxisLength, "
                                  "l = MinorAxisLength, C = ConvexArea)")


_Kind = Literal["equals", "at_most", "at_least"]


@dataclass(frozen=True)
class _PowerLaw:
    """A check of `feature` against coefficient x A^a P^p L^L' l^l' C^c (exponents in MEASURED order)."""

    feature: str
    rule: str
    kind: _Kind
    coefficient: float
    exponents: tuple[float, float, float, float, float]


_CHECKS = (
    _PowerLaw("AspectRation", "L/l", "equals", 1.0, (0, 0, 1, -1, 0)),
    _PowerLaw("EquivDiameter", "sqrt(4A/pi)", "equals", math.sqrt(4 / math.pi), (0.5, 0, 0, 0, 0)),
    _PowerLaw("Solidity", "A/C", "equals", 1.0, (1, 0, 0, 0, -1)),
    _PowerLaw("roundness", "4 pi A/P^2", "equals", 4 * math.pi, (1, -2, 0, 0, 0)),
    _PowerLaw("Compactness", "sqrt(4A/pi)/L", "equals", math.sqrt(4 / math.pi), (0.5, 0, -1, 0, 0)),
    _PowerLaw("ShapeFactor1", "L/A", "equals", 1.0, (-1, 0, 1, 0, 0)),
    _PowerLaw("ShapeFactor2", "A/L^3", "equals", 1.0, (1, 0, -3, 0, 0)),
    _PowerLaw("ShapeFactor3", "Compactness^2 = 4A/(pi L^2)", "equals", 4 / math.pi, (1, 0, -2, 0, 0)),
    _PowerLaw("ShapeFactor4", "4A/(pi L l)", "equals", 4 / math.pi, (1, 0, -1, -1, 0)),
    _PowerLaw("Area", "Area <= ConvexArea", "at_most", 1.0, (0, 0, 0, 0, 1)),
    _PowerLaw("MinorAxisLength", "MinorAxisLength <= MajorAxisLength", "at_most", 1.0, (0, 0, 1, 0, 0)),
    _PowerLaw("Extent", "Extent <= 1", "at_most", 1.0, (0, 0, 0, 0, 0)),
    # Each side of the bounding box is at most half the perimeter, so the box's area is at most P^2/4 and
    # Extent = A / box >= 4A/P^2. It holds on all 13,611 rows of the dataset (Extent is 2.29 to 4.64 times the
    # bound there), so an Extent divided by 10 always breaks it.
    _PowerLaw("Extent", "Extent >= 4A/P^2", "at_least", 4.0, (1, -2, 0, 0, 0)),
    _PowerLaw("Solidity", "Solidity <= 1", "at_most", 1.0, (0, 0, 0, 0, 0)),
    _PowerLaw("roundness", "roundness <= 1", "at_most", 1.0, (0, 0, 0, 0, 0)),
    _PowerLaw("ShapeFactor4", "ShapeFactor4 <= 1", "at_most", 1.0, (0, 0, 0, 0, 0)),
    # Eccentricity = sqrt(1 - r^2) with r = l/L: the power law gives r, _evaluate turns it into the eccentricity.
    _PowerLaw("Eccentricity", "sqrt(1-(l/L)^2)", "equals", 1.0, (0, 0, -1, 1, 0)),
)
_ECCENTRICITY = len(_CHECKS) - 1

_MEASURED_INDEX = np.array([FEATURES.index(name) for name in MEASURED])
_POSITIVE_INDEX = np.array([FEATURES.index(name) for name in POSITIVE])
_SENT_INDEX = np.array([FEATURES.index(check.feature) for check in _CHECKS])
_EXPONENTS = np.array([check.exponents for check in _CHECKS], dtype=np.float64).T  # (5, checks)
_ABS_EXPONENTS = np.abs(_EXPONENTS)
_LOG_COEFFICIENTS = np.log([check.coefficient for check in _CHECKS])
# max(difference x _SIGN_A, difference x _SIGN_B): |difference| for "equals", the excess over the bound otherwise.
_SIGN_A = np.array([-1.0 if check.kind == "at_least" else 1.0 for check in _CHECKS])
_SIGN_B = np.array([1.0 if check.kind == "at_most" else -1.0 for check in _CHECKS])


def _fast_path_constants() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Every check as log(sent) - log(implied) = weights @ log(row) - log(coefficient), and the interval it must
    lie in when every value is as precise as the dataset's (the eccentricity's log is replaced by log sqrt(1-e^2))."""
    weights = np.zeros((len(_CHECKS), len(FEATURES)))
    weights[np.arange(len(_CHECKS)), _SENT_INDEX] = 1.0
    weights[:, _MEASURED_INDEX] -= _EXPONENTS.T
    # |log(sent/implied)| <= F (1 + sum |exponent|) keeps |sent - implied| within the (SAFETY_FACTOR times larger)
    # tolerance of _evaluate; for the eccentricity, |log(sqrt(1-e^2) / r)| <= F keeps |e^2 - (1 - r^2)| within it.
    tolerance = DATASET_RELATIVE_PRECISION * (1.0 + _ABS_EXPONENTS.sum(axis=0))
    tolerance[_ECCENTRICITY] = DATASET_RELATIVE_PRECISION
    # Finite ends, so that a log of 0 (-inf) is refused here like a log of a negative value (nan).
    unbounded = np.finfo(np.float64).max
    kinds = [check.kind for check in _CHECKS]
    lower = np.where([kind == "at_most" for kind in kinds], -unbounded, -tolerance) + _LOG_COEFFICIENTS
    upper = np.where([kind == "at_least" for kind in kinds], unbounded, tolerance) + _LOG_COEFFICIENTS
    return weights, lower[:, np.newaxis], upper[:, np.newaxis]


_LOG_WEIGHTS, _LOG_LOWER, _LOG_UPPER = _fast_path_constants()
# The one-bean path's view of the checks: each with its sent feature's index and its measured features' exponents.
_ONE_BY_ONE_AT_MOST = 8  # refused beans judged in plain Python; more go through numpy
_POSITIVE_LIST = _POSITIVE_INDEX.tolist()
_SCALAR_CHECKS = tuple((check, FEATURES.index(check.feature),
                        tuple((int(index), exponent) for index, exponent in zip(_MEASURED_INDEX, check.exponents,
                                                                               strict=True) if exponent))
                       for check in _CHECKS)
_ECCENTRICITY_FEATURE = FEATURES.index("Eccentricity")


def _fast_consistent(rows: NDArray[np.float64]) -> NDArray[np.bool_]:
    """True per bean that passes every check at the dataset's precision, which implies `_evaluate` passes it at
    any precision sent: the common case, in a few operations for the whole batch (laid out one check per row,
    so that the reduction runs over contiguous memory)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(rows.T)
        eccentricity = rows[:, _ECCENTRICITY_FEATURE]
        logs[_ECCENTRICITY_FEATURE] = 0.5 * np.log1p(-eccentricity * eccentricity)
        ratios = _LOG_WEIGHTS @ logs
    return np.logical_and.reduce((ratios >= _LOG_LOWER) & (ratios <= _LOG_UPPER), axis=0)


@dataclass(frozen=True)
class _Evaluation:
    """Every check on every bean: (n, checks) values and verdicts, and (n, POSITIVE) positivity."""

    sent: NDArray[np.float64]
    implied: NDArray[np.float64]
    holds: NDArray[np.bool_]
    positive: NDArray[np.bool_]

    def consistent(self) -> NDArray[np.bool_]:
        """True per bean when every check holds."""
        return np.logical_and.reduce(self.holds, axis=1) & np.logical_and.reduce(self.positive, axis=1)


def _evaluate(rows: NDArray[np.float64], uncertainty: NDArray[np.float64]) -> _Evaluation:
    """Every check on `rows` (n, 16), each value uncertain by `uncertainty` (same shape, absolute)."""
    measured = rows[:, _MEASURED_INDEX]
    sent = rows[:, _SENT_INDEX]
    sent_uncertainty = uncertainty[:, _SENT_INDEX]
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.exp(np.log(measured) @ _EXPONENTS + _LOG_COEFFICIENTS)
        # First order: the relative error of a power law is the sum of |exponent| x each input's relative error.
        relative = (uncertainty[:, _MEASURED_INDEX] / measured) @ _ABS_EXPONENTS
        difference = sent - implied
        excess = np.maximum(difference * _SIGN_A, difference * _SIGN_B)
        holds = excess <= SAFETY_FACTOR * (sent_uncertainty + implied * relative)  # nan (a measurement <= 0): False
    # The eccentricity through its square, e^2 = 1 - r^2 with r = l/L, whose error (2 e u_e + u_e^2 from the
    # sent value, 2 r^2 x relative error of r from the measured ones) stays finite as e nears 0.
    ratio, eccentricity, error = implied[:, _ECCENTRICITY], sent[:, _ECCENTRICITY], sent_uncertainty[:, _ECCENTRICITY]
    squared = ratio * ratio
    holds[:, _ECCENTRICITY] = np.abs(eccentricity * eccentricity + squared - 1.0) <= SAFETY_FACTOR * (
        (2.0 * np.abs(eccentricity) + error) * error + 2.0 * squared * relative[:, _ECCENTRICITY])
    implied[:, _ECCENTRICITY] = np.sqrt(np.maximum(1.0 - squared, 0.0))
    return _Evaluation(sent, implied, holds, rows[:, _POSITIVE_INDEX] > 0)


def _full_precision(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """The tightest uncertainty any value can have: the dataset's own rounding."""
    return DATASET_RELATIVE_PRECISION * np.abs(rows)  # type: ignore[no-any-return]


def sent_precision(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each value's absolute uncertainty: half a unit of the last decimal of its shortest form ("0.82" -> 0.005,
    "28395.0" -> 0.5), at least the dataset's own rounding."""
    floor = _full_precision(rows).ravel()
    uncertainty = floor.copy()
    pending = np.flatnonzero(floor < 0.5)  # values whose decimals can matter
    decimals = 0
    while pending.size and decimals <= MAX_DECIMALS:
        # Several decimals per pass: all of them for one bean (fewest numpy calls), one at a time for a batch.
        powers = _POWERS_OF_TEN[decimals: decimals + max(1, _VALUES_PER_PASS // pending.size)]
        values = rows.ravel()[pending, np.newaxis]
        # Rounding to d decimals gives a value back exactly when its shortest form has no more than d decimals
        # (where value x 10^d passes float's integers and the test fails, half a unit is below the floor anyway).
        round_trips = np.rint(values * powers) / powers == values
        found = round_trips.any(axis=1)
        resolved = pending[found]
        uncertainty[resolved] = np.maximum(0.5 / powers[round_trips[found].argmax(axis=1)], floor[resolved])
        decimals += len(powers)
        # Values with more decimals stay pending while half a unit of the next decimal is above their floor.
        pending = pending[~found & (floor[pending] < 0.5 / (10.0 * powers[-1]))]
    return uncertainty.reshape(rows.shape)


def consistent(rows: NDArray[np.float64]) -> NDArray[np.bool_]:
    """True per bean (rows: n x 16, in FEATURES order) when every relation and bound holds at the precision the
    client sent."""
    verdict = _fast_consistent(rows)
    if not verdict.all():  # judge the refused again, at the precision each of their values was sent with
        refused = np.flatnonzero(~verdict)
        doubtful = rows[refused]
        if len(refused) <= _ONE_BY_ONE_AT_MOST:
            verdict[refused] = [_one_consistent(bean) for bean in doubtful.tolist()]
        else:
            verdict[refused] = _evaluate(doubtful, sent_precision(doubtful)).consistent()
    return verdict


def _one_consistent(row: list[float]) -> bool:
    """`_evaluate(...).consistent()` at the sent precision for one bean, in plain Python: for a few beans numpy's
    cost per call is most of the work (the tutorial's bean, sent at two decimals: ~15 µs against ~55)."""
    if not all(row[index] > 0 for index in _POSITIVE_LIST):
        return False
    uncertainty = _sent_uncertainties(row)
    for check, sent_index, terms in _SCALAR_CHECKS:
        implied, relative = check.coefficient, 0.0
        for index, exponent in terms:
            implied *= row[index] ** exponent
            relative += abs(exponent) * uncertainty[index] / row[index]
        sent, error = row[sent_index], uncertainty[sent_index]
        if check.feature == "Eccentricity":  # through its square, as _evaluate does
            squared = implied * implied
            excess = abs(sent * sent + squared - 1.0)
            allowed = (2.0 * abs(sent) + error) * error + 2.0 * squared * relative
        else:
            difference = sent - implied
            excess = abs(difference) if check.kind == "equals" else (
                difference if check.kind == "at_most" else -difference)
            allowed = error + implied * relative
        if excess > SAFETY_FACTOR * allowed:
            return False
    return True


def _sent_uncertainties(row: list[float]) -> list[float]:
    """`sent_precision` of one bean, from each value's shortest form, which repr gives ("0.82", "28395.0",
    "1.5e-05"): one repr of the whole list, split."""
    uncertainties = []
    for value, text in zip(row, repr(row)[1:-1].split(", "), strict=True):
        digits, _, exponent = text.partition("e")
        decimals = max(0, len(digits.partition(".")[2].rstrip("0")) - int(exponent or 0))
        uncertainties.append(max(0.5 * 10.0 ** -decimals, DATASET_RELATIVE_PRECISION * abs(value)))
    return uncertainties


def inconsistencies(row: NDArray[np.float64]) -> list[Inconsistency]:
    """What disagrees in one bean (16 values, in FEATURES order), at the precision its client sent."""
    rows = np.asarray(row, dtype=np.float64).reshape(1, len(FEATURES))
    evaluation = _evaluate(rows, sent_precision(rows))
    found = [Inconsistency(feature=name, sent=float(value), implied=0.0, rule=f"{name} > 0")
             for name, value, positive in zip(POSITIVE, rows[0, _POSITIVE_INDEX], evaluation.positive[0], strict=True)
             if not positive]
    found += [Inconsistency(feature=check.feature, sent=float(sent), implied=float(implied), rule=check.rule)
              for check, sent, implied, holds in zip(_CHECKS, evaluation.sent[0], evaluation.implied[0],
                                                     evaluation.holds[0], strict=True)
              if not holds and math.isfinite(implied)]  # not finite: a measured feature <= 0, reported above
    return found
