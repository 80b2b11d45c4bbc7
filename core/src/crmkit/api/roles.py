"""What each API key role may do, as scopes ``<family>:<read|write>``.

A family is a group of endpoints (``contacts`` covers ``/contacts/...``), except
``personal_data``, which grants the sensitive fields of contacts (birth date, phone, address:
see :mod:`crmkit.api.visibility`) wherever contacts are read or written. Roles map to fixed
scope sets; an ``integration`` key holds exactly the scopes it was created with, so a web-form
connector can be given ``contacts:write`` and nothing else. Which *records* a key reaches is
decided by :mod:`crmkit.api.visibility`, not by scopes.
"""

from __future__ import annotations

from collections.abc import Iterable

from crmkit.domain import Role
from crmkit.domain.values import IssueCollector, parse_enum

FAMILIES = (
    "contacts", "organizations", "pipelines", "deals", "activities", "tasks", "campaigns", "consents",
    "custom_fields", "users", "teams", "api_keys", "personal_data",
)
ACTIONS = ("read", "write")
ALL_SCOPES = frozenset(f"{family}:{action}" for family in FAMILIES for action in ACTIONS)

#: Families that configure the CRM rather than hold its records.
_ADMINISTRATION = frozenset({"custom_fields", "users", "teams", "api_keys"})
#: What agents work on every day.
_AGENT_WRITES = frozenset({"contacts", "organizations", "deals", "activities", "tasks", "consents", "personal_data"})
_READS = frozenset(f"{family}:read" for family in FAMILIES if family != "api_keys")
#: A read-only seat looks records up; it does not need people's birth dates, phones or addresses.
_READ_ONLY = _READS - {"personal_data:read"}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: ALL_SCOPES,
    Role.MANAGER: _READS | {f"{family}:write" for family in FAMILIES if family not in _ADMINISTRATION},
    Role.AGENT: _READS | {f"{family}:write" for family in _AGENT_WRITES},
    Role.READ_ONLY: _READ_ONLY,
    Role.INTEGRATION: frozenset(),  # only the scopes the key was given
}


def scopes_for(role: Role, scopes: Iterable[str]) -> frozenset[str]:
    """The scopes a key of ``role`` created with ``scopes`` may use."""
    return frozenset(scopes) & ALL_SCOPES if role == Role.INTEGRATION else ROLE_SCOPES[role]


def validate_grant(role: object, scopes: list[str]) -> tuple[Role, list[str]]:
    """Check a role and scopes for a new key; every problem is reported at once."""
    collector = IssueCollector()
    clean_role = collector.run(parse_enum, Role, role, "role")
    for index, scope in enumerate(scopes):
        if scope not in ALL_SCOPES:
            collector.add(f"scopes[{index}]", "unknown_scope",
                          f"{scope!r} is not a scope; scopes are <family>:read or <family>:write with family one of: {', '.join(FAMILIES)}")
    if clean_role == Role.INTEGRATION and not scopes:
        collector.add("scopes", "required", "an integration key needs at least one scope, e.g. contacts:write")
    elif clean_role is not None and clean_role != Role.INTEGRATION and scopes:
        collector.add("scopes", "not_allowed", f"only integration keys take scopes; role {clean_role.value} grants its own")
    collector.raise_if_any()
    assert isinstance(clean_role, Role)
    return clean_role, sorted(dict.fromkeys(scopes))

