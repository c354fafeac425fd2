"""Ground truth: table `feedback`, a reported true variety per recorded prediction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.Integer, sa.ForeignKey("drybeans.id", name="fk_feedback_record"), nullable=False),
        sa.Column("variety", sa.String(32), nullable=False, comment="the true variety"),
        sa.Column("reported_at", sa.TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("request_id", sa.String(32), comment="source key, when the client named the bean by it"),
        sa.Column("bean_index", sa.Integer),
        sa.UniqueConstraint("record_id", name="uq_feedback_record"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
