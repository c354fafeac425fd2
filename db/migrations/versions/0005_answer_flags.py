"""Which answers to doubt, kept with each record: columns consistent, in_distribution and needs_review of `drybeans`
(null where not assessed: /predict, and older rows).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("consistent", "in_distribution", "needs_review")


def upgrade() -> None:
    with op.batch_alter_table("drybeans") as table:  # SQLite alters by copying: batch mode does it
        for name in COLUMNS:
            table.add_column(sa.Column(name, sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("drybeans") as table:
        for name in COLUMNS:
            table.drop_column(name)
