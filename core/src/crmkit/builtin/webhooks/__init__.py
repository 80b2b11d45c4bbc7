"""The built-in outbound webhooks: signed HTTP POSTs of events to subscribed URLs.

``crmkit_handle_event`` only *queues* a delivery per matching subscription (once per event id
and subscription); the runner (:mod:`.delivery`: ``crm.webhooks.deliver()``,
``crmkit webhooks deliver``, and right after dispatch by default) POSTs them with a signature
(:mod:`.signing`), retries failures with backoff over hours, disables a subscription whose
receiver answers 410 and keeps a delivery log with manual redelivery. Tables and migrations
are the plugin's own (branch ``crmkit_webhooks``).

This package is the plugin (``crmkit.builtin.webhooks``, short name ``webhooks``); the hooks
live in :mod:`crmkit.builtin.webhooks.plugin`.
"""

from crmkit.builtin.webhooks.plugin import (
    crmkit_erase_personal_data,
    crmkit_export_personal_data,
    crmkit_handle_event,
    crmkit_register_commands,
    crmkit_register_event_types,
    crmkit_register_migrations,
    crmkit_register_settings,
    crmkit_register_tables,
    crmkit_startup,
)

__all__ = [
    "crmkit_erase_personal_data", "crmkit_export_personal_data", "crmkit_handle_event", "crmkit_register_commands",
    "crmkit_register_event_types", "crmkit_register_migrations", "crmkit_register_settings", "crmkit_register_tables",
    "crmkit_startup",
]
