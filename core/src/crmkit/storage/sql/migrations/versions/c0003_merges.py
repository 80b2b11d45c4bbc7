"""merges: the audit log of contact merges

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-23 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crmkit.storage.sql.types

revision: str = "c0003"
down_revision: str | Sequence[str] | None = "c0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("survivor_id", sa.String(length=32), nullable=False),
        sa.Column("duplicate_id", sa.String(length=32), nullable=False),
        sa.Column("rules", _json(), nullable=False),
        sa.Column("snapshot", _json(), nullable=False),
        sa.Column("consent_conflicts", _json(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("merged_at", crmkit.storage.sql.types.UTCDateTime(), nullable=False),
        sa.Column("undone_at", crmkit.storage.sql.types.UTCDateTime(), nullable=True),
        sa.Column("undone_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merges_survivor_id"), ["survivor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_merges_duplicate_id"), ["duplicate_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merges_duplicate_id"))
        batch_op.drop_index(batch_op.f("ix_merges_survivor_id"))
    op.drop_table("merges")
