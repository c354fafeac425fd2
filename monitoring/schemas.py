"""Wire schemas of feedback, live quality and drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from api import errors
from data.schema import CLASSES


class FeedbackItem(BaseModel):
    """A bean's true variety, naming its recorded prediction by `record_id` or by `request_id` and `bean_index`."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"example": {"record_id": 2, "variety": "SIRA"}})

    record_id: int | None = Field(None, ge=1, le=2**31 - 1, description="`record_id` from /v1/classify")
    request_id: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[0-9a-f]+$",
                                   description="`request_id` from /v1/classify or X-Request-ID from /predict")
    bean_index: int | None = Field(None, ge=0, le=2**31 - 1, description="the bean's position in that request, "
                                                                          "from 0")
    variety: str = Field(description=f"the true variety: one of {', '.join(CLASSES)}", examples=["SIRA"])

    @model_validator(mode="after")
    def _names_one_record(self) -> FeedbackItem:
        by_key = self.request_id is not None or self.bean_index is not None
        if (self.record_id is None) == (not by_key):
            raise ValueError("name the bean by record_id, or by request_id and bean_index, not both")
        if by_key and (self.request_id is None or self.bean_index is None):
            raise ValueError("request_id and bean_index go together")
        if self.variety not in CLASSES:
            raise ValueError(errors.UNKNOWN_VARIETY.format(name=errors.shown(self.variety), known=", ".join(CLASSES)))
        return self


FIRST_SINCE = datetime(1000, 1, 1, tzinfo=UTC)  # DATETIME's range in MariaDB and MySQL
LAST_SINCE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _comparable(since: datetime | None) -> datetime | None:
    """A `since` the database can compare with: within DATETIME's range once in UTC (naive: UTC already)."""
    if since is None:
        return None
    try:
        utc = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC
        utc = None
    if utc is None or not FIRST_SINCE <= utc <= LAST_SINCE:
        raise ValueError(errors.SINCE_OUT_OF_RANGE.format(first=f"{FIRST_SINCE:%Y-%m-%d}",
                                                          last=f"{LAST_SINCE:%Y-%m-%dT%H:%M:%S}"))
    return since


Since = Annotated[datetime | None, AfterValidator(_comparable)]


class FeedbackRequest(BaseModel):
    """True varieties of recorded beans."""

    model_config = ConfigDict(extra="forbid")

    items: list[FeedbackItem] = Field(min_length=1, description="one report per bean")


class FeedbackResponse(BaseModel):
    """What became of a report: committed (200), checked and stored, where reporting the same facts again changes
    nothing (they count as already known); or spooled (202), unchecked on local disk while the database is down.
    A spooled report is checked when it is replayed: a bean already reported keeps its first variety, and an item
    naming no recorded prediction is dropped (and logged)."""

    stored: Literal["committed", "spooled"] = Field(description="committed: the report is checked and in the "
                                                                "database; spooled: the database is down, the "
                                                                "report waits on local disk and is written when it "
                                                                "returns")
    recorded: int | None = Field(description="beans whose true variety is now stored; null when spooled")
    already_known: int | None = Field(description="beans whose same true variety was already stored; null when "
                                                  "spooled")


class Figure(BaseModel):
    """A live figure beside its training counterpart."""

    live: float | None = Field(description="null below the minimum count")
    count: int = Field(description="how many reported beans the live figure rests on")
    training: float | None = Field(description="the same figure on the training holdout, from the model's metadata")


class ClassQuality(BaseModel):
    """Precision (count: beans predicted as the variety), recall (count: beans truly of it) and F1 (count: both)."""

    precision: Figure
    recall: Figure
    f1: Figure


class EstimatedClassQuality(BaseModel):
    """Expected precision (count: beans predicted as the variety) and recall (count: beans expected to be truly of
    it, rounded), from calibrated probabilities alone."""

    precision: Figure
    recall: Figure


class ConfusionMatrix(BaseModel):
    """Rows: true variety; columns: predicted variety; both in `classes` order."""

    classes: list[str]
    live: list[list[int]]
    training: list[list[int]] | None


class QualityReport(BaseModel):
    """How right the model is on the recorded beans whose true variety was reported."""

    model: str
    since: datetime | None
    min_count: int = Field(description="a figure resting on fewer reported beans is null")
    labelled: int = Field(description="reported beans the report covers")
    accuracy: Figure
    per_class: dict[str, ClassQuality]
    confusion_matrix: ConfusionMatrix
    coverage: Figure | None = Field(None, description="share of the reported beans (of the newest `window` "
                                    "reports, in the report's scope) whose true variety is in the serving model's "
                                    "prediction set at coverage 0.95, re-scored from their features; training: the "
                                    "same on the holdout. Null for another model, or a model saved without "
                                    "prediction sets")
    window: int | None = Field(None, description="newest recorded beans behind the estimated figures, and newest "
                                                 "reports behind `coverage` (DRYBEANS_DRIFT_WINDOW); null for another "
                                                 "model")
    estimated_accuracy: Figure | None = Field(None, description="expected accuracy of the serving model on the "
                                                                "newest `window` recorded beans (count: those with "
                                                                "features), from its calibrated probabilities, "
                                                                "without labels (whoever answered them: re-scored); "
                                                                "null for another model")
    estimated_per_class: dict[str, EstimatedClassQuality] | None = Field(None, description="expected precision "
                                                                         "and recall per variety on the same beans")


class FeatureDrift(BaseModel):
    """One feature of recent beans against the training data."""

    psi: float | None = Field(description="population stability index over the training deciles")
    outside_training_range: float | None = Field(description="share of beans below the training minimum or above "
                                                             "its maximum")
    drifted: bool = Field(description="psi above the threshold")


class ClassMix(BaseModel):
    """Predicted varieties of recent beans against the training class priors."""

    psi: float | None
    training: dict[str, float]
    live: dict[str, float] | None


class DriftReport(BaseModel):
    """The newest recorded beans compared with the reference stored at training."""

    model: str
    window: int = Field(description="newest records examined")
    beans: int = Field(description="of those, beans with features (tutorial-era rows have none)")
    threshold: float
    features: dict[str, FeatureDrift]
    drifted: list[str] = Field(description="features whose PSI is above the threshold")
    class_mix: ClassMix
    outside_training_range: float | None = Field(description="share of beans outside the training range in at "
                                                             "least one feature")
