"""Tables. `drybeans` keeps the tutorial's columns (id, name, created_at) so its queries still work; `feedback`
holds the true varieties clients report later."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TIMESTAMP, Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint, func
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
    # Which answers to doubt (trust/): null where not assessed (/predict, and rows from before the columns).
    consistent: Mapped[bool | None] = mapped_column(Boolean)
    in_distribution: Mapped[bool | None] = mapped_column(Boolean)
    needs_review: Mapped[bool | None] = mapped_column(Boolean)


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


class RoleChange(Base):
    """One change of the models' roles, with the roles it left in force: the newest row is the current state, the
    rows before it the audit log. Rows are only ever added (the service's user may not UPDATE)."""

    __tablename__ = "model_roles"
    __table_args__ = (UniqueConstraint("revision", name="uq_model_roles_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # 1, 2, 3...: two changes made at once from the same state claim the same revision, and the second fails.
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # shadow, canary, promote, rollback, idle, guard
    version: Mapped[str | None] = mapped_column(String(64))  # the model the action named
    champion: Mapped[str] = mapped_column(String(64))  # versions of drybean_svc, from here on
    previous_champion: Mapped[str | None] = mapped_column(String(64))
    shadow: Mapped[str | None] = mapped_column(String(64))
    shadow_share: Mapped[float | None] = mapped_column(Float(53))
    canary: Mapped[str | None] = mapped_column(String(64))
    canary_share: Mapped[float | None] = mapped_column(Float(53))
    actor: Mapped[str] = mapped_column(String(64))  # the token's name, or "guard"
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, server_default=func.current_timestamp())


class ShadowPrediction(Base):
    """A second model's label for a bean another model answered: the shadow's, or the champion's for a bean the
    canary answered. Kept apart from `drybeans`, so it is never counted as an answer; paired with the answer for
    the comparison, and with the answer's record (by request_id, bean_index) for the reported truth."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (Index("ix_shadow_predictions_request", "request_id", "bean_index"),
                      Index("ix_shadow_predictions_model_id", "model_tag", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32))
    bean_index: Mapped[int] = mapped_column(Integer)
    model_tag: Mapped[str] = mapped_column(String(128))  # the model that scored in the background
    name: Mapped[str] = mapped_column(String(32))  # its label
    # Its scoring time for the whole request, for a sample (null: scored with others, in one batch).
    seconds: Mapped[float | None] = mapped_column(Float(53))
    answered_tag: Mapped[str] = mapped_column(String(128))  # the model whose answer the client got
    answered_name: Mapped[str] = mapped_column(String(32))
    answered_seconds: Mapped[float] = mapped_column(Float(53))
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, server_default=func.current_timestamp())
