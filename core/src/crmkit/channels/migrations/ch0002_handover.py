"""channels: messages.ambiguous (sends whose outcome is unknown) and messages.html

``ambiguous`` counts the attempts at a message that were handed over to the provider (SMTP's
final ".") without an answer being recorded — a worker killed in that window, or a connection
lost while waiting for the reply. ``html`` records whether the body was rendered as HTML (with
autoescaping), so a provider never has to guess it from the rendered text; it stays NULL on
rows queued before this revision.

Revision ID: ch0002
Revises: ch0001
Create Date: 2026-11-23 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ch0002"
down_revision: str | Sequence[str] | None = "ch0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("html", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("ambiguous", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("ambiguous")
        batch.drop_column("html")
