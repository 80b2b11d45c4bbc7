"""The core's CLI commands, contributed through ``crmkit_register_commands`` like a plugin's.

Each group lives in a small module; they are built here, per CLI, so no command objects exist
at import time and every ``build_cli`` gets fresh ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.cli import admin, contacts, db, deals, engagement, pipelines

    for command in (
        db.init_command,
        db.db_group(),
        admin.plugins_command,
        contacts.contacts_group(),
        contacts.organizations_group(),
        pipelines.pipelines_group(),
        deals.deals_group(),
        engagement.activities_group(),
        engagement.tasks_group(),
        engagement.campaigns_group(),
        engagement.consents_group(),
        admin.users_group(),
        admin.teams_group(),
        admin.custom_fields_group(),
        admin.events_group(),
        admin.privacy_group(),
        admin.demo_command,
    ):
        register(command)
