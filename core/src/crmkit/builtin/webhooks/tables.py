"""The webhooks plugin's tables. The migration in ``migrations/versions`` must agree with them
(a test compares them on every backend)."""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

SUBSCRIPTIONS = "webhook_subscriptions"
DELIVERIES = "webhook_deliveries"


def webhook_tables(metadata: sa.MetaData) -> list[sa.Table]:
    subscriptions = sa.Table(
        SUBSCRIPTIONS, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", json_type(), nullable=False),
        # Exactly one of the two: a generated secret (needed to sign, so stored as is) or the
        # name of the environment variable that holds the secret.
        sa.Column("secret", sa.String(255)),
        sa.Column("secret_env", sa.String(255)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime()),
        sa.Column("disabled_reason", sa.String(255)),
    )
    deliveries = sa.Table(
        DELIVERIES, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("subscription_id", ID, sa.ForeignKey(f"{SUBSCRIPTIONS}.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("contact_id", ID, index=True),  # the person the payload is about, for erasure
        sa.Column("payload", json_type(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("last_attempt_at", UTCDateTime()),
        sa.Column("response_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime()),
        # One delivery per event and subscription, however often the event is handed over.
        sa.UniqueConstraint("event_id", "subscription_id"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
    return [subscriptions, deliveries]
