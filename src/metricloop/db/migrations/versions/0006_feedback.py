"""feedback: people's labels on alerts, incidents and series ranges

Revision ID: 0006_feedback
Revises: 0003_outbox
Create Date: 2026-12-03 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_feedback"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("monitor", sa.String(length=200), nullable=True),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("slice", sa.String(length=500), nullable=False),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("effects", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("label", "monitor", "metric", "alert_id", "incident_id", "created_at"):
        op.create_index(f"ix_feedback_{column}", "feedback", [column], unique=False)


def downgrade() -> None:
    for column in ("label", "monitor", "metric", "alert_id", "incident_id", "created_at"):
        op.drop_index(f"ix_feedback_{column}", table_name="feedback")
    op.drop_table("feedback")
