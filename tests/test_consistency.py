"""trust/consistency.py on real beans: the dataset and the tutorial's bean are consistent; typos and swapped features
on held-out beans are caught; what disagrees is named; values are compared at the precision they were sent with."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from api.schemas import EXAMPLE_ROW
from data.readers import read_dataset
from data.schema import FEATURES
from trust.consistency import MEASURED, consistent, inconsistencies, sent_precision

CAUGHT_TARGET = 0.99
HELD_OUT_BEANS = 500
DERIVED = tuple(name for name in FEATURES if name not in (*MEASURED, "Extent"))
SYMBOLS = {"Area": "A", "Perimeter": "P", "MajorAxisLength": "L", "MinorAxisLength": "l", "ConvexArea": "C"}


def shifted(value: float, places: int) -> float:
    """The value a person sends who slips the decimal point by `places` (x10: 1, /10: -1)."""
    return float(Decimal(repr(float(value))).scaleb(places))


def rounded_decimals(value: float) -> int:
    """Decimals in the shortest form of a float ("28395.0" -> 0, "0.82" -> 2)."""
    return max(-int(Decimal(repr(float(value))).normalize().as_tuple().exponent), 0)


@pytest.fixture(scope="module")
def dataset_rows(shared_csv: Path) -> np.ndarray:
    return read_dataset(shared_csv).features.to_numpy()


@pytest.fixture(scope="module")
def beans(holdout: np.ndarray) -> np.ndarray:
    """500 of train.py's held-out beans."""
    return holdout[:HELD_OUT_BEANS]


def caught_share(rows: np.ndarray) -> float:
    return float(np.mean(~consistent(rows)))


def test_every_dataset_row_is_consistent(dataset_rows: np.ndarray) -> None:
    verdict = consistent(dataset_rows)
    assert len(verdict) == 13_611
    first = int(np.argmin(verdict))
    assert verdict.all(), f"row {first + 1}: {inconsistencies(dataset_rows[first])}"


def test_the_tutorials_bean_is_consistent_at_two_decimals() -> None:
    assert consistent(np.array([EXAMPLE_ROW])).tolist() == [True]
    assert inconsistencies(np.array(EXAMPLE_ROW)) == []


@pytest.mark.parametrize(("kind", "places"), [("x10", 1), ("/10", -1)])
def test_every_single_feature_typo_is_caught(beans: np.ndarray, kind: str, places: int) -> None:
    typos = []
    for column in range(len(FEATURES)):
        typo = beans.copy()
        typo[:, column] = [shifted(value, places) for value in beans[:, column]]
        typos.append(typo)
    shares = {name: caught_share(typo) for name, typo in zip(FEATURES, typos, strict=True)}
    share = caught_share(np.concatenate(typos))
    print(f"\n{kind} typos caught: {share:.2%} of {len(FEATURES) * len(beans)}; lowest per feature: "
          f"{min(shares, key=shares.__getitem__)} {min(shares.values()):.2%}")
    assert share >= CAUGHT_TARGET, shares


def test_every_swapped_pair_is_caught(beans: np.ndarray) -> None:
    precision = sent_precision(beans)
    swaps = []
    for first, second in itertools.combinations(range(len(FEATURES)), 2):
        tell_apart = np.abs(beans[:, first] - beans[:, second]) > np.maximum(precision[:, first], precision[:, second])
        swap = beans[tell_apart].copy()
        swap[:, [first, second]] = swap[:, [second, first]]
        swaps.append(swap)
    assert len(swaps) == 120
    swapped = np.concatenate(swaps)
    share = caught_share(swapped)
    print(f"\nswapped pairs caught: {share:.2%} of {len(swapped)}")
    assert share >= CAUGHT_TARGET


def test_consistent_agrees_with_inconsistencies(beans: np.ndarray) -> None:
    """The batch path (a fast test first) and the one-bean path judge alike, on clean and broken beans."""
    few = beans[:20]
    typos = [np.where(np.arange(len(FEATURES)) == column, few * factor, few)
             for column in range(len(FEATURES)) for factor in (10.0, 0.1)]
    rows = np.concatenate([few, np.round(few, 2), *typos])
    assert consistent(rows).tolist() == [not inconsistencies(row) for row in rows]


def involves(inconsistency_rule: str, feature: str) -> bool:
    """Whether a rule's formula uses a feature, by name or by symbol (A, P, L, l, C)."""
    names = set(re.findall(r"[A-Za-z]\w*", inconsistency_rule))
    return feature in names or SYMBOLS.get(feature) in names


@pytest.mark.parametrize("feature", FEATURES)
def test_inconsistencies_name_the_typo(beans: np.ndarray, feature: str) -> None:
    column = FEATURES.index(feature)
    for bean in beans[:50]:
        for places in (1, -1):
            typo = bean.copy()
            typo[column] = shifted(bean[column], places)
            found = inconsistencies(typo)
            assert found, f"{feature} {typo[column]} (was {bean[column]}) not caught"
            assert all(item.feature == feature or involves(item.rule, feature) for item in found), found
            if feature in DERIVED:
                # The feature itself disagrees: sent the typo, implied (about) the value before it.
                own = [item for item in found if item.feature == feature and item.sent == typo[column]]
                assert own, found
                assert any(item.implied == pytest.approx(bean[column], rel=1e-6) for item in own), own


def test_nonpositive_measurements_are_named() -> None:
    row = np.array(EXAMPLE_ROW)
    row[FEATURES.index("Perimeter")] = 0.0
    row[FEATURES.index("Area")] = -33958.0
    assert consistent(row[np.newaxis]).tolist() == [False]
    found = {(item.feature, item.rule) for item in inconsistencies(row)}
    assert {("Area", "Area > 0"), ("Perimeter", "Perimeter > 0")} <= found


def test_a_derived_feature_off_by_more_than_its_rounding_is_refused(beans: np.ndarray) -> None:
    """Beans rounded to two decimals are consistent; moving any derived feature by 0.02 makes them inconsistent
    (when the moved value still shows two decimals: 1.48 + 0.02 is sent as 1.5, which only claims 1.5 +- 0.05)."""
    rounded = np.round(beans[:200], 2)
    assert consistent(rounded).all()
    for feature in DERIVED:
        column = FEATURES.index(feature)
        for offset in (0.02, -0.02):
            moved = rounded.copy()
            moved[:, column] = np.round(moved[:, column] + offset, 2)
            moved = moved[np.round(moved[:, column], 1) != moved[:, column]]
            assert len(moved) > 100
            assert not consistent(moved).any(), (feature, offset)


def test_the_example_bean_with_roundness_off_by_two_hundredths() -> None:
    row = np.array(EXAMPLE_ROW)
    row[FEATURES.index("roundness")] = 0.95  # sent 0.93; 4 pi A/P^2 = 0.9307
    assert consistent(row[np.newaxis]).tolist() == [False]
    [item] = inconsistencies(row)
    assert (item.feature, item.sent, item.rule) == ("roundness", 0.95, "4 pi A/P^2")
    assert item.implied == pytest.approx(4 * np.pi * 33958.0 / 677.1**2)


def test_precision_is_half_a_unit_of_the_last_decimal_sent(dataset_rows: np.ndarray) -> None:
    assert sent_precision(np.array([[0.000564169, 28395.0, 0.82, 0.0, 1.0, 677.1]])) == pytest.approx(
        np.array([[5e-10, 0.5, 0.005, 0.5, 0.5, 0.05]]))
    # Never below the dataset's own rounding (2e-7 relative), otherwise the shortest form's last decimal.
    values = np.concatenate([dataset_rows[:500], np.round(dataset_rows[:500], 3), dataset_rows[:500] / 7]).ravel()
    expected = [max(0.5 * 10.0 ** -rounded_decimals(value), 2e-7 * abs(value)) for value in values]
    assert sent_precision(values.reshape(-1, len(FEATURES))).ravel() == pytest.approx(expected, rel=1e-12)


def test_a_few_beans_are_judged_as_in_a_batch(dataset_rows: np.ndarray) -> None:
    """Up to 8 refused beans take the plain-Python path, more take numpy's: the same verdicts, on beans at every
    precision, with typos (x10, /10, a last digit off) and non-positive values."""
    rng = np.random.default_rng(7)
    rows = dataset_rows[rng.choice(len(dataset_rows), 600, replace=False)]
    typos = rows.copy()
    typos[np.arange(len(rows)), rng.integers(0, len(FEATURES), len(rows))] *= rng.choice([10, 0.1, 1.0001], len(rows))
    typos[:5, 0] = [0.0, -1.0, 1e-300, 1e15, 3.0]
    for batch in (rows, np.round(rows, 2), np.round(rows, 0), typos, np.round(typos, 3)):
        one_by_one = np.concatenate([consistent(batch[start:start + 3]) for start in range(0, len(batch), 3)])
        assert np.array_equal(one_by_one, consistent(batch))
    assert 0.3 < caught_share(typos) < 1
