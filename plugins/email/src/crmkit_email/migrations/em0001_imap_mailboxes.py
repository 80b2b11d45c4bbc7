"""crmkit-email: IMAP polling's UID bookkeeping (email_imap_mailboxes)

The plugin's own Alembic branch (``crmkit_email``), so it migrates independently of the core
and of other plugins; the table references no core table.

Revision ID: em0001
Revises:
Create Date: 2026-11-23 15:45:00
"""

from collections.abc import Sequence

import crmkit.storage.sql.types
import sqlalchemy as sa
from alembic import op

revision: str = "em0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crmkit_email",)
depends_on: str | Sequence[str] | None = None


def _dt() -> sa.types.TypeEngine:
    return crmkit.storage.sql.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "email_imap_mailboxes",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=True),
        sa.Column("leased_until", _dt(), nullable=True),
        sa.Column("next_poll_at", _dt(), nullable=True),
        sa.Column("last_polled_at", _dt(), nullable=True),
        sa.Column("failed_uid", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_email_imap_mailboxes")),
    )


def downgrade() -> None:
    op.drop_table("email_imap_mailboxes")
