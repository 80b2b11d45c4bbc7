"""crmkit: a plugin-based, headless CRM framework.

The public API for users and plugin authors::

    import crmkit

    crm = crmkit.open("sqlite:///crm.db", migrate=True)
    contact = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact

    @crmkit.hookimpl
    def crmkit_handle_event(event, crm): ...
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from crmkit.app import CRM, open
from crmkit.domain import (
    Activity,
    Address,
    Attribution,
    Campaign,
    Consent,
    ConsentStatus,
    Contact,
    CustomFieldDefinition,
    Deal,
    Direction,
    Event,
    LifecycleStage,
    Organization,
    Outcome,
    Pipeline,
    Stage,
    StageChange,
    Task,
    Team,
    User,
)
from crmkit.errors import ConflictError, CRMError, FieldIssue, NotFound, PluginError, ValidationFailed
from crmkit.plugins import hookimpl

try:
    __version__ = version("crmkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "CRM", "Activity", "Address", "Attribution", "CRMError", "Campaign", "ConflictError", "Consent",
    "ConsentStatus", "Contact", "CustomFieldDefinition", "Deal", "Direction", "Event", "FieldIssue",
    "LifecycleStage", "NotFound", "Organization", "Outcome", "Pipeline", "PluginError", "Stage",
    "StageChange", "Task", "Team", "User", "ValidationFailed", "__version__", "hookimpl", "open",
]
