"""console: monitor pauses and resumes (who, when, why), the newest row per monitor is its state

Revision ID: 0006_console
Revises: 0003_outbox
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_console"
down_revision = "0006_knowledge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("monitor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_pauses_monitor", "monitor_pauses", ["monitor"])


def downgrade() -> None:
    op.drop_index("ix_monitor_pauses_monitor", table_name="monitor_pauses")
    op.drop_table("monitor_pauses")
