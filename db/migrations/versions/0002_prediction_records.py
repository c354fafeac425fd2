"""Make each row a useful record: request id and position (the idempotency key), model tag, the features.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FEATURE_COLUMNS = (
    "area", "perimeter", "major_axis_length", "minor_axis_length", "aspect_ratio", "eccentricity",
    "convex_area", "equiv_diameter", "extent", "solidity", "roundness", "compactness",
    "shape_factor_1", "shape_factor_2", "shape_factor_3", "shape_factor_4",
)


def upgrade() -> None:
    with op.batch_alter_table("drybeans") as table:
        table.add_column(sa.Column("request_id", sa.String(32)))
        table.add_column(sa.Column("bean_index", sa.Integer, comment="position of the bean in its request"))
        table.add_column(sa.Column("model_tag", sa.String(128)))
        for name in FEATURE_COLUMNS:
            table.add_column(sa.Column(name, sa.Float(53)))
        table.create_unique_constraint("uq_drybeans_request_bean", ["request_id", "bean_index"])
        table.create_index("ix_drybeans_name_id", ["name", "id"])


def downgrade() -> None:
    with op.batch_alter_table("drybeans") as table:
        table.drop_index("ix_drybeans_name_id")
        table.drop_constraint("uq_drybeans_request_bean", type_="unique")
        for name in ("request_id", "bean_index", "model_tag", *FEATURE_COLUMNS):
            table.drop_column(name)
