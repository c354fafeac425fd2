"""Property-based tests (hypothesis) of request parsing, validation and error reshaping."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pydantic
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from api import errors, parsing, rest_errors
from api.schemas import Bean, ClassifyRequest
from data.schema import FEATURES, MAX_MAGNITUDE

MAX_BEANS = 4
thorough = settings(deadline=None, max_examples=300)  # each property: 300 inputs, well under a second each

# Numbers a client can send: JSON's (ints of any size, finite floats) and what Python's parsers also take
# (NaN, Infinity, 1e400 -> inf), plus booleans, which are ints in Python but not measurements.
finite_numbers = (st.integers(-(10**15), 10**15)
                  | st.floats(min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE, allow_nan=False))
numbers = finite_numbers | st.floats() | st.integers(-(10**400), 10**400) | st.booleans()
scalars = st.none() | numbers | st.text(max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# Near misses: lists of rows that are mostly right, so that valid matrices come up as well as every fault.
rows = st.lists(finite_numbers, min_size=16, max_size=16)
near_rows = st.lists(rows | st.lists(numbers | json_values, min_size=15, max_size=17) | json_values, max_size=6)
valid_rows = st.lists(rows, min_size=1, max_size=MAX_BEANS)
any_data = near_rows | json_values


def outcome(parse: Any, *args: Any) -> list[list[float]] | tuple[type[errors.ApiError], str]:
    """The parsed matrix as lists, or the ApiError's class and message; any other exception propagates."""
    try:
        matrix = parse(*args)
    except errors.ApiError as error:
        return type(error), error.message
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float64
    assert matrix.ndim == 2 and matrix.shape[1] == len(FEATURES) and np.isfinite(matrix).all()
    return matrix.tolist()  # type: ignore[no-any-return]


def is_measurement(value: object) -> bool:
    """A finite int or float (not a bool) within the plausible range of a measurement."""
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(float(value)) and abs(value) <= MAX_MAGNITUDE  # type: ignore[arg-type]
    except OverflowError:
        return False


def is_valid(data: object) -> bool:
    """What the service takes: 1..MAX_BEANS rows, each a list of 16 measurements."""
    return (isinstance(data, list) and 1 <= len(data) <= MAX_BEANS
            and all(isinstance(row, list) and len(row) == len(FEATURES) and all(map(is_measurement, row))
                    for row in data))


def as_floats(data: list[list[int | float]]) -> list[list[float]]:
    """The rows as float64 values."""
    return [[float(value) for value in row] for row in data]


@thorough
@given(any_data)
def test_array_form_parses_exactly_the_valid_matrices_and_refuses_the_rest_with_an_api_error(data: Any) -> None:
    result = outcome(parsing.tutorial_rows, data, MAX_BEANS)
    if is_valid(data):
        assert result == as_floats(data)
    else:
        assert isinstance(result, tuple)


def json_encodable(data: object) -> bool:
    """Not a string already, and no NaN or Infinity, which JSON cannot write."""
    return not isinstance(data, str) and "NaN" not in json.dumps(data) and "Infinity" not in json.dumps(data)


@thorough
@given(any_data.filter(json_encodable))
def test_string_form_agrees_with_array_form(data: Any) -> None:
    assert outcome(parsing.tutorial_rows, json.dumps(data), MAX_BEANS) == outcome(parsing.tutorial_rows, data,
                                                                                    MAX_BEANS)


@thorough
@given(st.text() | st.text(alphabet="[]{},:0123456789.eE+-\"NaInfity ", max_size=40))
def test_any_data_string_parses_or_is_refused_with_an_api_error(data: str) -> None:
    outcome(parsing.tutorial_rows, data, MAX_BEANS)


@thorough
@given(valid_rows)
def test_valid_rows_round_trip_exactly_through_every_form(data: list[list[int | float]]) -> None:
    expected = as_floats(data)
    assert outcome(parsing.tutorial_rows, data, MAX_BEANS) == expected
    assert outcome(parsing.tutorial_rows, json.dumps(data), MAX_BEANS) == expected
    body = json.dumps({"beans": [dict(zip(FEATURES, row, strict=True)) for row in data]})
    request = ClassifyRequest.model_validate_json(body)
    assert outcome(parsing.bean_rows, request.beans, MAX_BEANS) == expected


bean_values = finite_numbers | numbers | json_values
beans = st.fixed_dictionaries({}, optional=dict.fromkeys(FEATURES, bean_values)) | st.dictionaries(
    st.sampled_from([*FEATURES, "Colour", "area"]), bean_values)
bean_like = st.fixed_dictionaries(dict.fromkeys(FEATURES, finite_numbers)) | beans | json_values


@thorough
@given(st.lists(bean_like, max_size=6) | json_values)
def test_typed_beans_validate_to_the_same_finite_matrix_or_are_refused(beans_field: Any) -> None:
    body = json.dumps({"beans": beans_field})
    try:
        request = ClassifyRequest.model_validate_json(body)
    except pydantic.ValidationError:
        return  # answered 400 by BentoML
    sent = json.loads(body)["beans"]  # as the service receives it
    assert all(isinstance(bean, Bean) for bean in request.beans)
    result = outcome(parsing.bean_rows, request.beans, MAX_BEANS)
    assert all(set(bean) == set(FEATURES) and all(map(is_measurement, bean.values())) for bean in sent)
    if len(sent) <= MAX_BEANS:
        assert result == as_floats([[bean[name] for name in FEATURES] for bean in sent])
    else:
        assert result == (errors.TooLarge, errors.TOO_MANY_BEANS.format(count=len(sent), limit=MAX_BEANS))


def error_object(body: object) -> bool:
    """Whether `body` has the documented error shape: {"error": non-empty str, "code": str, "detail"?}."""
    return (isinstance(body, dict) and {"error", "code"} <= set(body) <= {"error", "code", "detail"}
            and isinstance(body["error"], str) and body["error"] != "" and isinstance(body["code"], str))


pydantic_detail = st.fixed_dictionaries({"loc": st.lists(st.text(max_size=5) | st.integers(), max_size=3),
                                         "msg": st.text(min_size=1, max_size=10), "type": st.text(max_size=5)})
upstream_bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.lists(pydantic_detail, max_size=5).map(lambda detail: json.dumps({"detail": detail}).encode()),
    st.text(max_size=20).map(lambda message: json.dumps([{"error": message}]).encode()),  # BentoML's shape
)


@thorough
@given(st.integers(400, 499), upstream_bodies)
@example(400, b"[" * 100_000)  # nesting deeper than the JSON parser's recursion limit
@example(400, b'""')
@example(400, b'{"error": 1, "code": null}')
@example(400, b'{"error": "refused", "code": "invalid_input", "trace": "..."}')
def test_reshape_gives_every_4xx_body_the_error_shape_and_is_idempotent(status: int, body: bytes) -> None:
    shaped = rest_errors.reshape(status, body)
    assert error_object(shaped), shaped
    assert rest_errors.reshape(status, json.dumps(shaped).encode()) == shaped


@pytest.mark.parametrize(("status", "code"), [(404, "not_found"), (405, "method_not_allowed"), (413, "too_large")])
def test_reshape_names_the_status_in_the_code_of_a_plain_text_answer(status: int, code: str) -> None:
    assert rest_errors.reshape(status, b"Not Found\n") == {"error": "Not Found", "code": code}
