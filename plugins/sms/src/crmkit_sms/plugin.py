"""The crmkit-sms plugin's hook implementations (entry point ``sms``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crmkit import hookimpl

from crmkit_sms.channel import SmsChannel
from crmkit_sms.privacy import crmkit_erase_personal_data, crmkit_export_personal_data  # noqa: F401 - hook implementations
from crmkit_sms.settings import SmsSettings

if TYPE_CHECKING:
    from crmkit.app import CRM

SECTION = "sms"


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register(SECTION, SmsSettings)


@hookimpl
def crmkit_register_channels(register: Callable[[Any], None]) -> None:
    register(SmsChannel())  # one per CRM: its provider and HTTP connections belong to that CRM


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    SmsChannel.for_crm(crm).configure(crm, crm.settings_for(SECTION))


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit_sms.commands import sms_group

    register(sms_group())


@hookimpl
def crmkit_register_routes(register: Callable[[Any], None]) -> None:
    from crmkit_sms.routes import sms_routes

    for route in sms_routes():
        register(route)
