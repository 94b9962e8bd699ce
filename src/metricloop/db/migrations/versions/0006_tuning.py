"""tuning: suggestions computed from feedback, waiting for approval or applied

Revision ID: 0006_tuning
Revises: 0006_feedback (the lead re-chains)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_tuning"
down_revision = "0006_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuning_suggestions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("monitor", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("base_spec", sa.JSON(), nullable=False),
        sa.Column("proposed_spec", sa.JSON(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("tradeoff", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_tuning_suggestions_monitor", "tuning_suggestions", ["monitor"])
    op.create_index("ix_tuning_suggestions_status", "tuning_suggestions", ["status"])


def downgrade() -> None:
    op.drop_index("ix_tuning_suggestions_status", table_name="tuning_suggestions")
    op.drop_index("ix_tuning_suggestions_monitor", table_name="tuning_suggestions")
    op.drop_table("tuning_suggestions")
