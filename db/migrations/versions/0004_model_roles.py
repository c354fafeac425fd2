"""Models' roles and the second opinions: table `model_roles` (append-only: the newest row is in force, the rest is
the audit log) and table `shadow_predictions` (a shadow's or the champion's label for a bean another model answered).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_roles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("champion", sa.String(64), nullable=False),
        sa.Column("previous_champion", sa.String(64)),
        sa.Column("shadow", sa.String(64)),
        sa.Column("shadow_share", sa.Float(53)),
        sa.Column("canary", sa.String(64)),
        sa.Column("canary_share", sa.Float(53)),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", sa.TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()),
        sa.UniqueConstraint("revision", name="uq_model_roles_revision"),
    )
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("bean_index", sa.Integer, nullable=False),
        sa.Column("model_tag", sa.String(128), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("seconds", sa.Float(53), comment="null: scored in a batch, not timed alone"),
        sa.Column("answered_tag", sa.String(128), nullable=False),
        sa.Column("answered_name", sa.String(32), nullable=False),
        sa.Column("answered_seconds", sa.Float(53), nullable=False),
        sa.Column("created_at", sa.TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()),
    )
    op.create_index("ix_shadow_predictions_request", "shadow_predictions", ["request_id", "bean_index"])
    op.create_index("ix_shadow_predictions_model_id", "shadow_predictions", ["model_tag", "id"])


def downgrade() -> None:
    op.drop_table("shadow_predictions")
    op.drop_table("model_roles")
