"""webhooks: subscriptions and the delivery log (the built-in webhooks plugin's branch)

Revision ID: wh0001
Revises:
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import crmkit.storage.sql.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "wh0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crmkit_webhooks",)
depends_on: str | Sequence[str] | None = "c0002"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=True),
        sa.Column("secret_env", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", crmkit.storage.sql.types.UTCDateTime(), nullable=False),
        sa.Column("disabled_at", crmkit.storage.sql.types.UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=32), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", crmkit.storage.sql.types.UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", crmkit.storage.sql.types.UTCDateTime(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", crmkit.storage.sql.types.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", crmkit.storage.sql.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.id"],
                                name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("event_id", "subscription_id", name=op.f("uq_webhook_deliveries_event_id_subscription_id")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_subscription_id"), ["subscription_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
