"""rca_findings: an incident's root causes and related metrics, one row each, per analysis run

Revision ID: 0006_rcaint
Revises: 0003_outbox
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_rcaint"
down_revision = "0006_tuning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rca_findings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=500), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rca_findings_incident_id", "rca_findings", ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_rca_findings_incident_id", table_name="rca_findings")
    op.drop_table("rca_findings")
