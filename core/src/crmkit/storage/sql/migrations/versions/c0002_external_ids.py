"""external ids of contacts

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-23 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.storage.sql.types

revision: str = "c0002"
down_revision: str | Sequence[str] | None = "c0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "external_ids",
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", crmkit.storage.sql.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_external_ids_contact_id_contacts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("system", "value", name=op.f("pk_external_ids")),
    )
    with op.batch_alter_table("external_ids", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_external_ids_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("external_ids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_external_ids_contact_id"))
    op.drop_table("external_ids")
