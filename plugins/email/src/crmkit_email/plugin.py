"""The crmkit-email plugin's hook implementations (entry point ``email``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.errors import ConfigError

from crmkit_email.channel import EmailChannel
from crmkit_email.privacy import crmkit_erase_personal_data, crmkit_export_personal_data  # noqa: F401 - hook implementations
from crmkit_email.settings import EmailSettings

if TYPE_CHECKING:
    from crmkit.app import CRM

SECTION = "email"


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register(SECTION, EmailSettings)


@hookimpl
def crmkit_register_channels(register: Callable[[Any], None]) -> None:
    register(EmailChannel())  # one per CRM: its SMTP connection and throttle belong to that CRM


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    try:
        transactional = crm.settings_for("channels").transactional_purposes
    except ConfigError:  # the built-in channels plugin is disabled: nothing will be sent
        transactional = ["transactional"]
    EmailChannel.for_crm(crm).configure(crm.settings_for(SECTION), transactional)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit_email.commands import email_group

    register(email_group())


@hookimpl
def crmkit_register_routes(register: Callable[[Any], None]) -> None:
    from crmkit_email.routes import preference_routes, tracking_routes, unsubscribe_routes

    for route in [*unsubscribe_routes(), *tracking_routes(), *preference_routes()]:
        register(route)


@hookimpl
def crmkit_register_metrics(register: Callable[[Any], None]) -> None:
    from crmkit_email.metrics import definitions

    for metric in definitions():  # email.open_rate, email.click_rate
        register(metric)


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    from crmkit_email.imap import define_table

    register(define_table(metadata))  # IMAP polling's UID bookkeeping


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    from pathlib import Path

    register("crmkit_email", str(Path(__file__).with_name("migrations")))  # crmkit db upgrade creates the table


@hookimpl
def crmkit_worker_tick(crm: CRM, now: datetime) -> None:
    from crmkit_email.imap import worker_tick

    worker_tick(crm, now)  # polls the IMAP mailbox when imap_host is set and a poll is due
