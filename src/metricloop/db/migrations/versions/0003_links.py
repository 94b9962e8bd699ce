"""link_uses: an acknowledge or resolve link of a message acts once

Revision ID: 0003_links
Revises: 0002
Create Date: 2026-12-03 07:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_links"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "link_uses",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=500), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nonce", "action"),
    )
    with op.batch_alter_table("link_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_uses_incident_id"), ["incident_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("link_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_uses_incident_id"))
    op.drop_table("link_uses")
