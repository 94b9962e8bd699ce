"""outbox: per-incident event numbers (seq), lease tokens, the chain index

Revision ID: 0003_outbox
Revises: 0002

Plain ADD COLUMN on every database, SQLite included: a batch (copy-and-rename) migration of `incidents` would drop
the old table, and with foreign keys on, its ON DELETE CASCADE would empty the timeline and timers.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0003_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("outbox", sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("outbox", sa.Column("lease_token", sa.String(length=40), nullable=False, server_default=""))
    # the chain of a row (incident, channel, recipient) in order: what the dispatcher looks up before a claim
    op.create_index("ix_outbox_chain", "outbox", ["incident_id", "channel", "recipient", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_chain", table_name="outbox")
    op.drop_column("outbox", "lease_token")
    op.drop_column("outbox", "seq")
    op.drop_column("incidents", "seq")
