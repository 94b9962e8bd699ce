"""outbox: per-incident event numbers (seq), lease tokens

Revision ID: 0003_outbox
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_token", sa.String(length=40), nullable=False, server_default=""))
    # the chain of a row (incident, channel, recipient) in order: what the dispatcher looks up before a claim
    op.create_index("ix_outbox_chain", "outbox", ["incident_id", "channel", "recipient", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_chain", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lease_token")
        batch.drop_column("seq")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("seq")
