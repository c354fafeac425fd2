"""Tables. `drybeans` keeps the tutorial's columns (id, name, created_at) so its queries still work; `feedback`
holds the true varieties clients report later."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TIMESTAMP, Float, ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from data.schema import FEATURES
from db.base import Base

# Feature columns, named in snake case after the dataset's features, in the same order.
FEATURE_COLUMNS: dict[str, str] = dict(zip(FEATURES, (
    "area", "perimeter", "major_axis_length", "minor_axis_length", "aspect_ratio", "eccentricity",
    "convex_area", "equiv_diameter", "extent", "solidity", "roundness", "compactness",
    "shape_factor_1", "shape_factor_2", "shape_factor_3", "shape_factor_4",
), strict=True))


class Prediction(Base):
    """One classified bean. Rows from the tutorial era have only id, name and created_at."""

    __tablename__ = "drybeans"
    __table_args__ = (
        # The idempotency key: a replayed write of the same prediction is ignored, never duplicated.
        UniqueConstraint("request_id", "bean_index", name="uq_drybeans_request_bean"),
        Index("ix_drybeans_name_id", "name", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))  # the predicted variety
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, server_default=func.current_timestamp())
    request_id: Mapped[str | None] = mapped_column(String(32))
    bean_index: Mapped[int | None] = mapped_column(Integer)  # position in its request
    model_tag: Mapped[str | None] = mapped_column(String(128))
    area: Mapped[float | None] = mapped_column(Float(53))
    perimeter: Mapped[float | None] = mapped_column(Float(53))
    major_axis_length: Mapped[float | None] = mapped_column(Float(53))
    minor_axis_length: Mapped[float | None] = mapped_column(Float(53))
    aspect_ratio: Mapped[float | None] = mapped_column(Float(53))
    eccentricity: Mapped[float | None] = mapped_column(Float(53))
    convex_area: Mapped[float | None] = mapped_column(Float(53))
    equiv_diameter: Mapped[float | None] = mapped_column(Float(53))
    extent: Mapped[float | None] = mapped_column(Float(53))
    solidity: Mapped[float | None] = mapped_column(Float(53))
    roundness: Mapped[float | None] = mapped_column(Float(53))
    compactness: Mapped[float | None] = mapped_column(Float(53))
    shape_factor_1: Mapped[float | None] = mapped_column(Float(53))
    shape_factor_2: Mapped[float | None] = mapped_column(Float(53))
    shape_factor_3: Mapped[float | None] = mapped_column(Float(53))
    shape_factor_4: Mapped[float | None] = mapped_column(Float(53))


class Feedback(Base):
    """A bean's true variety, reported after its prediction: one fact per record, never changed."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("record_id", name="uq_feedback_record"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[int] = mapped_column(Integer, ForeignKey("drybeans.id", name="fk_feedback_record"))
    variety: Mapped[str] = mapped_column(String(32))  # the true variety
    reported_at: Mapped[datetime] = mapped_column(TIMESTAMP, server_default=func.current_timestamp())
    # The source key, when the client named the bean by (request_id, bean_index) instead of its record id.
    request_id: Mapped[str | None] = mapped_column(String(32))
    bean_index: Mapped[int | None] = mapped_column(Integer)
