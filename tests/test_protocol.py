"""protocol/tensors.py: V2 input tensors to a feature matrix, outputs to tensors, and the messages of each refusal."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from api import errors
from api.schemas import EXAMPLE_ROW
from data.schema import FEATURES
from protocol import tensors
from protocol.schemas import (
    MAX_ID,
    MAX_INPUTS,
    MAX_OUTPUTS,
    MAX_PARAMETERS,
    InferenceRequest,
    RequestInput,
    RequestOutput,
)
from trust.assessment import Assessment

ROWS = np.array([EXAMPLE_ROW, [value * 1.5 for value in EXAMPLE_ROW]])


def features(data: object, shape: list[int] | None = None, datatype: str = "FP64") -> RequestInput:
    return RequestInput(name="features", shape=shape or [2, 16], datatype=datatype, data=data)  # type: ignore[arg-type]


def columns(rows: np.ndarray, shape: str = "[n]") -> list[RequestInput]:
    n = len(rows)
    return [RequestInput(name=name, shape=[n] if shape == "[n]" else [n, 1], datatype="FP64",
                         data=rows[:, i].tolist() if shape == "[n]" else rows[:, i:i + 1].tolist())
            for i, name in enumerate(FEATURES)]


def refused(inputs: list[RequestInput], max_beans: int = 100) -> str:
    with pytest.raises(errors.ApiError) as caught:
        tensors.feature_matrix(inputs, max_beans)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(("name", "shape", "data"), [
    ("input-0", [2, 16], ROWS.tolist()), ("predict", [2, 16], ROWS.ravel().tolist()), ("x", [16], ROWS[0].tolist())],
    ids=["mlserver", "kserve", "one-bean"])
def test_one_tensor_of_whole_beans_under_any_name(name, shape, data) -> None:
    """As MLServer's and KServe's sklearn runtimes take it: the one input tensor, whatever its name."""
    matrix = tensors.feature_matrix([RequestInput(name=name, shape=shape, datatype="FP64", data=data)], 100)
    np.testing.assert_array_equal(matrix, ROWS[:len(matrix)])


@pytest.mark.parametrize("data", [ROWS.ravel().tolist(), ROWS.tolist()], ids=["flat", "nested"])
def test_one_features_tensor_flat_or_nested(data) -> None:
    np.testing.assert_array_equal(tensors.feature_matrix([features(data)], 100), ROWS)


@pytest.mark.parametrize("shape", ["[n]", "[n,1]"])
def test_sixteen_named_tensors_in_any_order(shape) -> None:
    inputs = columns(ROWS, shape)[::-1]
    np.testing.assert_array_equal(tensors.feature_matrix(inputs, 100), ROWS)


def test_fp32_values_are_taken_as_float32() -> None:
    matrix = tensors.feature_matrix([features(ROWS.tolist(), datatype="FP32")], 100)
    np.testing.assert_array_equal(matrix, ROWS.astype(np.float32).astype(np.float64))


def test_integers_are_numbers() -> None:
    data = [int(v) for v in np.rint(ROWS.ravel())]
    assert tensors.feature_matrix([features(data)], 100).dtype == np.float64


@pytest.mark.parametrize(("inputs", "says"), [
    ([features(ROWS.ravel().tolist(), [32])], "input 'features' has shape [32]; it must be [n, 16]"),
    ([features(ROWS.ravel().tolist(), [2, 15])], "it must be [n, 16]"),
    ([features(ROWS.tolist(), datatype="INT64")], "datatype 'INT64'; this model takes FP64 or FP32"),
    ([features(ROWS.tolist(), datatype="fp64")], "datatype 'fp64'"),
    ([features(ROWS.ravel().tolist()[:31])], "input 'features' has 31 data elements; its shape [2, 16] needs 32"),
    ([features([ROWS[0].tolist()] * 3)], "nested data does not match its shape [2, 16]"),
    ([features([*ROWS[0].tolist(), *ROWS[1].tolist()[:15], "1.0"])], "element 31: \"1.0\" is not a number"),
    ([features([True, *ROWS.ravel().tolist()[1:]])], "element 0: true is not a number"),
    ([features([None, *ROWS.ravel().tolist()[1:]])], "element 0: null is not a number"),
    ([features([float("nan"), *ROWS.ravel().tolist()[1:]])], "element 0: nan is not a finite number"),
    ([features([10**400, *ROWS.ravel().tolist()[1:]])], "element 0: 1000"),
    ([features([1e16, *ROWS.ravel().tolist()[1:]])], "out of range; measurements lie within ±1e+15"),
    ([features(ROWS.tolist()), features(ROWS.tolist())], "input 'features' is given more than once"),
    ([features(ROWS.tolist()), columns(ROWS)[0]], "send it alone, not with 'Area'"),
    (columns(ROWS)[1:], "missing input 'Area'"),
    ([*columns(ROWS), RequestInput(name="Colour", shape=[2], datatype="FP64", data=[1, 2])], "unknown input 'Colour'"),
    ([RequestInput(name="a", shape=[2, 16], datatype="FP64", data=ROWS.tolist()),
      RequestInput(name="b", shape=[2, 16], datatype="FP64", data=ROWS.tolist())], "2 input tensors and none is a "
     "feature name, so which one holds the beans?"),
    ([features(ROWS.ravel().tolist(), [-2, 16])], "shape [-2, 16]; it must be [n, 16] or [16]"),
    ([*columns(ROWS)[1:], RequestInput(name="Area", shape=[3], datatype="FP64", data=[1, 2, 3])],
     "different lengths: 'Perimeter' has 2 beans, 'Area' has 3"),
    ([*columns(ROWS)[:-1], RequestInput(name="ShapeFactor4", shape=[2, 2], datatype="FP64", data=[1, 2, 3, 4])],
     "must be [n] or [n, 1]"),
], ids=["1-d", "15-columns", "int64", "lower-case", "short-data", "nesting", "string", "bool", "null", "nan",
        "huge-int", "out-of-range", "duplicate", "features-and-column", "missing", "unknown", "ambiguous", "negative",
        "lengths", "column-shape"])
def test_bad_inputs_are_refused_naming_the_problem(inputs, says) -> None:
    assert says in refused(inputs)


def test_over_the_bean_limit_is_too_large_before_the_data_is_read() -> None:
    with pytest.raises(errors.TooLarge, match="3 beans in one request; the limit is 2"):
        tensors.feature_matrix([features([], [3, 16])], 2)


def test_no_beans_is_refused() -> None:
    with pytest.raises(errors.InvalidInput, match=errors.NO_BEANS):
        tensors.feature_matrix([features([], [0, 16])], 2)


def test_requested_outputs() -> None:
    assert tensors.requested_outputs(None) == ["label", "scores", "probabilities", "prediction_set", "needs_review",
                                               "consistent", "in_distribution"]
    assert tensors.requested_outputs([RequestOutput(name="probabilities"), RequestOutput(name="label")]) == [
        "probabilities", "label"]
    with pytest.raises(errors.InvalidInput, match="unknown output 'proba'; this model outputs label, scores"):
        tensors.requested_outputs([RequestOutput(name="proba")])
    with pytest.raises(errors.InvalidInput, match="output 'label' is requested more than once"):
        tensors.requested_outputs([RequestOutput(name="label")] * 2)


LABELS = np.array(["SIRA", "CALI"])
SCORES = np.arange(6.0).reshape(2, 3)
TRUSTING = SimpleNamespace(classes=("A", "B", "C"), conformal=True, ood=True)  # a model fitted with sets and scores
DOUBTS = Assessment(rows=np.ones((2, 16)), probabilities=SCORES / 10, consistent=np.array([True, False]),
                    in_distribution=np.array([True, False]), ood_score=np.array([1.5, 9.0]),
                    sets=np.array([[True, False, False], [False, True, True]]), needs_review=np.array([False, True]))


def outputs(names: list[str], as_binary: frozenset[str] = frozenset()) -> tuple[list[Any], list[bytes]]:
    return tensors.output_tensors(tensors.output_arrays(names, TRUSTING, LABELS, SCORES, DOUBTS), as_binary)


def test_output_tensors_are_flat_row_major_with_their_columns() -> None:
    (label, probabilities), blobs = outputs(["label", "probabilities"])
    assert blobs == []
    assert label.model_dump(exclude_none=True) == {"name": "label", "shape": [2], "datatype": "BYTES",
                                                   "data": ["SIRA", "CALI"]}
    assert probabilities.shape == [2, 3] and probabilities.datatype == "FP64"
    assert probabilities.data == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert probabilities.parameters == {"columns": "A,B,C"}


def test_the_doubts_are_outputs_like_the_others() -> None:
    found, _ = outputs(["prediction_set", "needs_review", "consistent", "in_distribution"])
    assert [(t.name, t.datatype, t.shape, t.data) for t in found] == [
        ("prediction_set", "BYTES", [2], ["A", "B,C"]), ("needs_review", "BOOL", [2], [False, True]),
        ("consistent", "BOOL", [2], [True, False]), ("in_distribution", "BOOL", [2], [True, False])]
    (sets, review), blobs = outputs(["prediction_set", "needs_review"], frozenset({"prediction_set", "needs_review"}))
    assert sets.parameters == {"binary_data_size": 12} and review.parameters == {"binary_data_size": 2}
    assert blobs == [b"\x01\x00\x00\x00A\x03\x00\x00\x00B,C", b"\x00\x01"]  # BOOL: one byte each
    untrusting = SimpleNamespace(classes=("A", "B", "C"), conformal=None, ood=None)  # saved before sets and scores
    assert tensors.available_outputs(untrusting) == ("label", "scores", "probabilities", "needs_review", "consistent")


def test_binary_outputs_are_little_endian_bytes_and_length_prefixed_strings() -> None:
    (label, probabilities), blobs = outputs(["label", "probabilities"], frozenset({"label", "probabilities"}))
    assert blobs == [b"\x04\x00\x00\x00SIRA\x04\x00\x00\x00CALI", (SCORES / 10).astype("<f8").tobytes()]
    assert label.data is None and label.parameters == {"binary_data_size": 16}
    assert probabilities.parameters == {"columns": "A,B,C", "binary_data_size": 48}


def test_metadata_describes_the_batch_dimension_as_minus_one() -> None:
    assert [t.model_dump() for t in tensors.input_metadata()] == [
        {"name": "features", "datatype": "FP64", "shape": [-1, 16]}]
    assert [(t.name, t.datatype, t.shape) for t in tensors.output_metadata(TRUSTING)] == [
        ("label", "BYTES", [-1]), ("scores", "FP64", [-1, 3]), ("probabilities", "FP64", [-1, 3]),
        ("prediction_set", "BYTES", [-1]), ("needs_review", "BOOL", [-1]), ("consistent", "BOOL", [-1]),
        ("in_distribution", "BOOL", [-1])]


def test_many_named_inputs_are_checked_for_repeats_in_one_pass() -> None:
    many = [RequestInput(name=f"input-{i}", shape=[1], datatype="FP64", data=[1.0]) for i in range(50_000)]
    started = time.perf_counter()
    assert "input 'input-0' is given more than once" in refused([*many, many[0]])
    assert time.perf_counter() - started < 1, "the check is quadratic"  # 50,000 names: ~40 s when it was


LONG = "x" * 1_000_000


@pytest.mark.parametrize(("inputs", "says"), [
    ([features(ROWS.tolist(), datatype=LONG)], f"datatype {errors.shown(LONG)};"),
    ([*columns(ROWS)[1:], RequestInput(name=LONG, shape=[2], datatype="FP64", data=[1.0, 2.0])],
     f"unknown input {errors.shown(LONG)};"),
    ([features([LONG, *ROWS.ravel().tolist()[1:]])], f"element 0: {errors.clipped(json.dumps(LONG))} is not a number"),
], ids=["datatype", "name", "element"])
def test_client_text_is_named_without_being_echoed_whole(inputs, says) -> None:
    message = refused(inputs)
    assert says in message and len(message) < 1_000


def test_a_long_output_name_is_clipped() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        tensors.requested_outputs([RequestOutput(name=LONG)])
    assert caught.value.message.startswith(f"unknown output {errors.shown(LONG)};")


@pytest.mark.parametrize(("request_body", "says"), [
    ({"inputs": [{"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [1]} for i in range(MAX_INPUTS + 1)]},
     f"List should have at most {MAX_INPUTS} items"),
    ({"inputs": [features([1.0] * 16, [1, 16]).model_dump()], "outputs": [{"name": "label"}] * (MAX_OUTPUTS + 1)},
     f"List should have at most {MAX_OUTPUTS} items"),
    ({"inputs": [features([1.0] * 16, [1, 16]).model_dump()], "parameters": {str(i): 1 for i in range(17)}},
     f"Dictionary should have at most {MAX_PARAMETERS} items"),
    ({"inputs": [{**features([1.0] * 16, [1, 16]).model_dump(), "parameters": {str(i): 1 for i in range(17)}}]},
     f"Dictionary should have at most {MAX_PARAMETERS} items"),
    ({"inputs": [features([1.0] * 16, [1, 16]).model_dump()], "id": "x" * (MAX_ID + 1)},
     f"String should have at most {MAX_ID} characters"),
], ids=["inputs", "outputs", "parameters", "tensor-parameters", "id"])
def test_counts_are_bounded_by_the_schema(request_body, says) -> None:
    with pytest.raises(ValidationError, match=says):
        InferenceRequest.model_validate(request_body)
