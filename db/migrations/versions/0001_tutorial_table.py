"""The tutorial's table: id, name, created_at.

A database that already has it (from the tutorial's Flask app) keeps it, rows and all.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("drybeans"):
        return  # a tutorial-era table: adopted as it is, upgraded by the next revision
    op.create_table(
        "drybeans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.TIMESTAMP, server_default=sa.func.current_timestamp()),
    )


def downgrade() -> None:
    op.drop_table("drybeans")
