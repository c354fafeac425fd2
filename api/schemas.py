"""Wire schemas: what clients send and receive. Table rows live in db/models.py."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from data.schema import EXAMPLE_ROW, FEATURES, MAX_MAGNITUDE
from trust.assessment import DEFAULT_COVERAGE
from trust.conformal import MAX_COVERAGE, MIN_COVERAGE
from trust.consistency import Inconsistency

EXAMPLE_BEAN: dict[str, JsonValue] = dict(zip(FEATURES, EXAMPLE_ROW, strict=True))

StoreStatus = Literal["committed", "spooled", "skipped"]


def _feature(description: str, name: str) -> float:
    return Field(description=description, examples=[EXAMPLE_BEAN[name]],  # type: ignore[no-any-return]
                 ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)


class Bean(BaseModel):
    """The 16 shape features of one bean, named as in the dataset (measured on its photograph, in pixels)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,
                              json_schema_extra={"example": EXAMPLE_BEAN})  # OpenAPI 3.0 form

    Area: float = _feature("area of the bean: pixels within its boundary", "Area")
    Perimeter: float = _feature("length of the bean's border", "Perimeter")
    MajorAxisLength: float = _feature("longest line that can be drawn across the bean", "MajorAxisLength")
    MinorAxisLength: float = _feature("longest line perpendicular to the major axis", "MinorAxisLength")
    AspectRation: float = _feature("aspect ratio: major / minor axis length (the dataset's spelling)",
                                   "AspectRation")
    Eccentricity: float = _feature("eccentricity of the ellipse with the same moments", "Eccentricity")
    ConvexArea: float = _feature("pixels in the smallest convex polygon containing the bean", "ConvexArea")
    EquivDiameter: float = _feature("diameter of the circle with the bean's area", "EquivDiameter")
    Extent: float = _feature("bean area / bounding-box area", "Extent")
    Solidity: float = _feature("convexity: bean area / convex area", "Solidity")
    roundness: float = _feature("4πA / P² (the dataset's lower-case name)", "roundness")
    Compactness: float = _feature("equivalent diameter / major axis length", "Compactness")
    ShapeFactor1: float = _feature("shape factor 1: major axis length / area", "ShapeFactor1")
    ShapeFactor2: float = _feature("shape factor 2: minor axis length / area", "ShapeFactor2")
    ShapeFactor3: float = _feature("shape factor 3: area / (π (L/2)²)", "ShapeFactor3")
    ShapeFactor4: float = _feature("shape factor 4: area / (π (L/2) (l/2))", "ShapeFactor4")


class ClassifyRequest(BaseModel):
    """One or many beans to classify."""

    model_config = ConfigDict(extra="forbid")

    # fail_fast: the first bad bean ends validation, so a body of many bad beans costs one bean's errors.
    beans: list[Bean] = Field(min_length=1, fail_fast=True, description="the beans, each with its 16 features")
    store: bool = Field(True, description="record the predictions in the database")
    explain: bool = Field(False, description="also answer, per bean, why the label won: see `explanation`")
    coverage: float = Field(DEFAULT_COVERAGE, ge=MIN_COVERAGE, le=MAX_COVERAGE,
                            description="the share of beans whose true variety the prediction sets should hold "
                                        "(split conformal, calibrated at training on held-out folds)")


class Explanation(BaseModel):
    """Why the label won, exactly: the one pairwise classifier that decided between the label and the runner-up."""

    versus: str = Field(description="the runner-up: the variety with the next-highest score", examples=["SIRA"])
    contributions: dict[str, float] = Field(
        description="per feature: the pairwise classifier's weight times the bean's standardised value "
                    "((value - training mean) / training standard deviation). Positive pushes towards the label, "
                    "negative towards the runner-up; the larger the magnitude, the more it weighed")
    intercept: float = Field(description="the pairwise classifier's constant term, in the same orientation")
    decision: float = Field(
        description="the sum of the contributions plus the intercept: the pairwise classifier's decision value "
                    "(equal to it to float rounding). Positive: this classifier prefers the label over the "
                    "runner-up; negative (rare): the runner-up won this contest, the label won more of the others")


class BeanPrediction(BaseModel):
    """The model's answer for one bean."""

    label: str = Field(description="predicted variety", examples=["DERMASON"])
    scores: dict[str, float] = Field(description="one-vs-rest decision score per variety: the label scores highest "
                                                 "(votes of the pairwise classifiers plus a confidence below 1/3)")
    probabilities: dict[str, float] = Field(
        description="calibrated probability of each variety (they sum to 1): softmax(scores / T), T fitted on "
                    "held-out training folds. The label is the most probable variety, except on a vote tie "
                    "(several varieties winning as many pairwise contests), where the label is the first tied "
                    "variety in alphabetical order, as scikit-learn decides, and the probabilities rank the tied "
                    "varieties by their pairwise margins")
    prediction_set: list[str] | None = Field(
        description="the varieties whose calibrated probability reaches the threshold calibrated for the requested "
                    "`coverage`: the true variety is in the set for that share of beans. Empty: no variety is likely "
                    "enough; several: the model cannot tell them apart. Null for a model trained before sets",
        examples=[["DERMASON"]])
    needs_review: bool = Field(description="doubt this answer: the set is not exactly one variety, or the features "
                                           "are inconsistent, or the bean is out of the training distribution")
    consistent: bool = Field(description="the 10 derived features agree with the 6 measured ones (and every bound "
                                         "holds) at the precision sent")
    inconsistencies: list[Inconsistency] | None = Field(None, exclude_if=lambda value: value is None,
                                                        description="only when not consistent: what disagrees")
    in_distribution: bool | None = Field(description="the bean lies within the training beans of its predicted "
                                                     "variety (ood_score within the threshold fitted at training)")
    ood_score: float | None = Field(description="Mahalanobis distance to the training beans of the predicted variety, "
                                                "on standardised features")
    explanation: Explanation | None = Field(None, exclude_if=lambda value: value is None,
                                            description="only when the request asked for it (`explain: true`)")
    record_id: int | None = Field(None, description="id of the stored row in table drybeans, when stored")


class ClassifyResponse(BaseModel):
    """Labels, scores and, when stored, the ids of the stored records."""

    model: str = Field(description="tag of the model that answered", examples=["drybean_svc:5bc6hnhhtka6sax4"])
    request_id: str = Field(description="identifies this request's rows in the database")
    stored: StoreStatus = Field(description="committed: the rows are in the database; spooled: the database is "
                                            "down, the rows are on local disk and will be written when it returns; "
                                            "skipped: store was false")
    predictions: list[BeanPrediction]


class TutorialRequest(BaseModel):
    """The tutorial's request: rows of 16 features, and whether to record the predictions."""

    model_config = ConfigDict(extra="forbid")  # a misspelt "store" must not silently store

    data: str | list[Any] = Field(description="rows of 16 features: a JSON-encoded string, as the tutorial sent "
                                              "it, or a plain JSON array", examples=[json.dumps([EXAMPLE_ROW])])
    store: bool = Field(True, description="record the predictions in the database")


class TutorialResponse(BaseModel):
    """The tutorial's answer: the labels as a JSON-encoded string."""

    predictions: str = Field(description="JSON-encoded list of labels", examples=['["DERMASON"]'])


class StoredPrediction(BaseModel):
    """A recorded prediction. Rows from the tutorial era have no request, model or features."""

    id: int
    name: str = Field(description="predicted variety")
    created_at: datetime | None
    request_id: str | None
    model_tag: str | None
    features: dict[str, float] | None = Field(description="the bean's 16 features, by dataset name")


class PredictionPage(BaseModel):
    """A page of recorded predictions, newest first."""

    items: list[StoredPrediction]
    total: int = Field(description="how many predictions match, on all pages")
    limit: int
    offset: int


class VarietyCounts(BaseModel):
    """How many predictions of each variety are recorded."""

    counts: dict[str, int] = Field(description="predictions per variety; varieties never predicted are left out")
    total: int


class Readiness(BaseModel):
    """What `/readyz` reports: ready means the model is loaded and each prediction's record can be kept: the
    database answers, or the local spool has room."""

    ready: bool
    model: str
    database: Literal["up", "down"]
    spool: Literal["ok", "full"] = Field(description="full: over its size limit, out of disk, or not writable")
    spool_depth: int = Field(description="predictions waiting on local disk for the database")
