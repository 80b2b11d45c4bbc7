"""core: (owner, created_at, id) indexes for team-scoped list pages

A team-scoped API key lists a collection as one index range per owner within its reach,
merged (crmkit.api.visibility.Access.partitions): each range needs the owner column followed
by the list's default order.

Revision ID: c0005
Revises: c0004
Create Date: 2026-11-23 16:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c0005"
down_revision: str | Sequence[str] | None = "c0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("organizations", "contacts", "deals")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_owner_id_created_at_id", table, ["owner_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_owner_id_created_at_id", table_name=table)
