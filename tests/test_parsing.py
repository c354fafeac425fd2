"""Request bodies to feature matrices: both tutorial forms, typed beans, and the messages for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from api import errors
from api.parsing import bean_rows, tutorial_rows
from api.schemas import EXAMPLE_BEAN, EXAMPLE_ROW, Bean


def test_the_tutorials_string_and_a_plain_array_give_the_same_matrix() -> None:
    from_string = tutorial_rows(json.dumps([EXAMPLE_ROW, EXAMPLE_ROW]), max_beans=10)
    from_array = tutorial_rows([EXAMPLE_ROW, EXAMPLE_ROW], max_beans=10)
    assert from_string.dtype == np.float64 and from_string.shape == (2, 16)
    assert np.array_equal(from_string, from_array)


def test_integers_are_numbers() -> None:
    assert tutorial_rows([[1] * 16], max_beans=1).tolist() == [[1.0] * 16]


def test_beans_follow_the_models_feature_order() -> None:
    shuffled = Bean(**dict(reversed(list(EXAMPLE_BEAN.items()))))
    assert bean_rows([shuffled], max_beans=1).tolist() == [EXAMPLE_ROW]


@pytest.mark.parametrize(("data", "error", "message"), [
    ("[[1, 2", errors.InvalidInput, "data is not valid JSON"),
    ("[" * 100_000, errors.InvalidInput, "data is not valid JSON"),
    ("[[Infinity]]", errors.InvalidInput, "Infinity is not a number JSON allows"),
    ('"beans"', errors.InvalidInput, errors.DATA_NOT_A_LIST),
    ([], errors.InvalidInput, errors.NO_BEANS),
    ([EXAMPLE_ROW, 3], errors.InvalidInput, errors.ROW_NOT_A_LIST.format(row=2)),
    ([EXAMPLE_ROW[:-1]], errors.InvalidInput, "row 1 has 15 features"),
    ([[*EXAMPLE_ROW[:-1], "1"]], errors.InvalidInput, 'row 1, feature ShapeFactor4: "1" is not a number'),
    ([[*EXAMPLE_ROW[:-1], [1]]], errors.InvalidInput, "feature ShapeFactor4: [1] is not a number"),
    ([[*EXAMPLE_ROW[:-1], False]], errors.InvalidInput, "feature ShapeFactor4: false is not a number"),
    ([[float("nan"), *EXAMPLE_ROW[1:]]], errors.InvalidInput, "feature Area: nan is not a finite number"),
    ([[2**1100, *EXAMPLE_ROW[1:]]], errors.InvalidInput, "is not a finite number"),
    ([EXAMPLE_ROW] * 4, errors.TooLarge, errors.TOO_MANY_BEANS.format(count=4, limit=3)),
])
def test_bad_data_raises_an_error_naming_the_problem(data: object, error: type[errors.ApiError],
                                                     message: str) -> None:
    with pytest.raises(error) as caught:
        tutorial_rows(data, max_beans=3)  # type: ignore[arg-type]
    assert message in caught.value.message


def test_too_many_typed_beans() -> None:
    with pytest.raises(errors.TooLarge):
        bean_rows([Bean(**EXAMPLE_BEAN)] * 2, max_beans=1)


@pytest.mark.parametrize(("value", "says"), [
    ("x" * 1_000_000, errors.clipped(json.dumps("x" * 1_000_000))),
    (10**400, errors.clipped(str(10**400)) + " is not a finite number"),
    (10**300, errors.clipped(str(10**300)) + " is out of range"),
])
def test_a_bad_value_is_named_without_being_echoed_whole(value: object, says: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        tutorial_rows([[value, *EXAMPLE_ROW[1:]]], max_beans=1)
    assert says in caught.value.message and len(caught.value.message) < 200
