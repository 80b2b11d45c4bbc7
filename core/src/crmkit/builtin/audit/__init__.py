"""The built-in audit log: who changed what and when, for every write made through a unit of
work — the core's services, the intake, and plugins' own writes alike.

An entry is written per event by ``crmkit_before_commit``, in the transaction of the change,
so the audit and the data cannot disagree: a rolled-back write leaves no entry. Read it with
``crm.audit.query(...)`` or ``crmkit audit list``. Erasing a person redacts the values in
their entries; exporting includes their trail. Its table has its own migration branch,
``crmkit_audit``.

This package is the plugin (``crmkit.builtin.audit``, short name ``audit``); the hooks live in
:mod:`crmkit.builtin.audit.plugin`.
"""

from crmkit.builtin.audit.plugin import (
    crmkit_before_commit,
    crmkit_erase_personal_data,
    crmkit_export_personal_data,
    crmkit_register_commands,
    crmkit_register_migrations,
    crmkit_register_tables,
    crmkit_startup,
)

__all__ = [
    "crmkit_before_commit", "crmkit_erase_personal_data", "crmkit_export_personal_data", "crmkit_register_commands",
    "crmkit_register_migrations", "crmkit_register_tables", "crmkit_startup",
]
