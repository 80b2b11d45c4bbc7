"""The channel layer's tables, added to a CRM's metadata by the built-in ``channels_plugin``
(their migrations are the ``crmkit_channels`` branch in ``channels/migrations``)."""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

BRANCH = "crmkit_channels"
NAMES = ("message_templates", "messages", "message_suppressions")


def define_tables(md: sa.MetaData) -> list[sa.Table]:
    templates = sa.Table(
        "message_templates", md,
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("channel", sa.String(32)),
        sa.Column("subject", sa.Text),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("uses", json_type(), nullable=False),  # the context entities it needs
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    messages = sa.Table(
        "messages", md,
        sa.Column("id", ID, primary_key=True),
        # One message per key, enforced by the database so concurrent retries of one request
        # cannot both insert.
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("contact_id", ID, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("deal_id", ID, sa.ForeignKey("deals.id", ondelete="SET NULL")),
        sa.Column("campaign_id", ID, sa.ForeignKey("campaigns.id", ondelete="SET NULL")),
        sa.Column("template", sa.String(100)),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("body", sa.Text, nullable=False),
        # True: an HTML body (rendered with autoescaping); NULL on rows from before ch0002.
        sa.Column("html", sa.Boolean),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        # Attempts whose outcome is unknown: handed over (SMTP's final ".") but never recorded
        # as accepted or refused. The recipient may have that many extra copies.
        sa.Column("ambiguous", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("last_error", sa.Text),
        sa.Column("veto_reason", sa.Text),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.Index("ix_messages_due", "status", "next_attempt_at"),
        sa.Index("ix_messages_contact_channel", "contact_id", "channel", "created_at"),
        sa.Index("ix_messages_provider", "channel", "provider_message_id"),
    )
    suppressions = sa.Table(
        "message_suppressions", md,
        sa.Column("id", ID, primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("contact_id", ID, sa.ForeignKey("contacts.id", ondelete="SET NULL")),
        sa.Column("detail", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("channel", "address", "reason"),
    )
    return [templates, messages, suppressions]
