"""Record-level and field-level rules: which records an API key may see and change, and which
of their fields.

Scopes (:mod:`crmkit.api.roles`) say what *kind* of record a key may read or write; this module
says *which* ones. The rules, in one place so a list, a single record, a write and a plugin's
check cannot disagree:

* **Reach.** ``admin`` and ``integration`` keys reach every record (an integration is limited
  by its scopes instead). ``agent``, ``manager`` and ``read_only`` keys reach the records of
  the user the key acts for (``user_id``) and of that user's team; a key with no user reaches
  no owned record at all.
* **Owned records** (contacts, organizations and deals by ``owner_id``, tasks by
  ``assignee_id``) are visible when their owner is within reach.
* **Records without an owner** follow their parents: an activity is visible when the contact,
  deal and organization it names are; a consent when its contact is; an unassigned task when
  its contact and deal are; an unowned deal when its contact and organization are; an unowned
  contact when its organization is. A record that names no parent is the shared pool (new web
  leads waiting to be claimed), visible to every key that may read its kind.
* **A record outside reach does not exist** for the key: 404 on every endpoint that takes its
  id, absent from lists, and a reference to it in a body is the same 422 ``not_found`` as a
  reference to a missing record — so a key cannot learn what it may not see.
* **Writes stay within reach**: a new record is owned by the key's user unless the body names
  an owner; naming (or changing to) an owner outside reach is a 403 naming the field.
* **Sensitive fields** (:data:`SENSITIVE`: a contact's birth date, phone and address) need the
  scope ``personal_data:read`` to be shown — they are left out of every response otherwise,
  and may not be used as list filters — and ``personal_data:write`` to be written (403 naming
  each field).

The SQL condition (:meth:`Access.condition`) is the rule; a single record is checked by running
the same condition for its id (:meth:`Access.can_see`), so pages, counts and single records
always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.api.errors import ApiError
from crmkit.domain import Role
from crmkit.errors import FieldIssue, NotFound, ValidationFailed

if TYPE_CHECKING:
    from crmkit.api.keys import ApiKey
    from crmkit.app import CRM

#: Above this many users within reach, a team-scoped list is one query over the whole
#: condition rather than one index range per owner (see :meth:`Access.partitions`).
MAX_PARTITIONS = 64
#: Roles whose keys reach only their user's and their team's records.
TEAM_SCOPED = frozenset({Role.AGENT, Role.MANAGER, Role.READ_ONLY})
#: The scope family that grants the sensitive fields.
PERSONAL_DATA = "personal_data"
#: Fields shown only with ``personal_data:read`` and written only with ``personal_data:write``.
SENSITIVE: Mapping[str, tuple[str, ...]] = {"contacts": ("birth_date", "phone", "address")}


@attrs.frozen
class RecordRule:
    """How records of one family are tied to people: the column naming their owner (if any)
    and the columns naming parent records (column → parent family)."""

    table: str
    label: str
    owner: str | None = None
    parents: Mapping[str, str] = attrs.field(factory=dict)


#: The families whose records are limited by reach; every other family (pipelines, campaigns,
#: custom fields, users, teams, API keys) is configuration, limited by scopes only.
RULES: Mapping[str, RecordRule] = {
    "organizations": RecordRule("organizations", "organization", "owner_id"),
    "contacts": RecordRule("contacts", "contact", "owner_id", {"organization_id": "organizations"}),
    "deals": RecordRule("deals", "deal", "owner_id", {"contact_id": "contacts", "organization_id": "organizations"}),
    "tasks": RecordRule("tasks", "task", "assignee_id", {"contact_id": "contacts", "deal_id": "deals"}),
    "activities": RecordRule("activities", "activity", None,
                             {"contact_id": "contacts", "deal_id": "deals", "organization_id": "organizations"}),
    "consents": RecordRule("consents", "consent", None, {"contact_id": "contacts"}),
}


class Access:
    """What one API key may see and change, record by record and field by field.

    Built per request (the authentication middleware puts one in ``request.auth``); the users
    within reach are read once, when first needed.
    """

    def __init__(self, crm: CRM, key: ApiKey):
        self.crm = crm
        self.key = key

    @property
    def unrestricted(self) -> bool:
        """True when the key reaches every record (admin and integration keys)."""
        return self.key.role not in TEAM_SCOPED

    @cached_property
    def owners(self) -> frozenset[str]:
        """The users whose records a team-scoped key reaches: its user and the user's team
        (nobody when the key acts for no user, or its user is gone)."""
        if self.key.user_id is None:
            return frozenset()
        users = self._table("users")
        team = sa.select(users.c.team_id).where(users.c.id == self.key.user_id).scalar_subquery()
        query = sa.select(users.c.id).where(sa.or_(users.c.id == self.key.user_id,
                                                   sa.and_(users.c.team_id.is_not(None), users.c.team_id == team)))
        with self.crm.read() as uow:
            assert uow.connection is not None
            return frozenset(uow.connection.execute(query).scalars())

    # --- reading ------------------------------------------------------------------------

    def condition(self, family: str) -> sa.ColumnElement[bool] | None:
        """The SQL condition a row of ``family`` must meet to be visible; None when every row is."""
        if self.unrestricted or family not in RULES:
            return None
        return self._visible(family)

    def partitions(self, family: str) -> list[sa.ColumnElement[bool]] | None:
        """The visibility condition of ``family`` split into disjoint parts whose OR it is —
        one per owner within reach, and the ownerless records that follow their parents — for
        lists that read each part as its own index range (owner, created_at, id) and merge
        them; None when the rule has no owner column, the key reaches every row, or so many
        owners are within reach that one query over the whole condition is the better plan."""
        rule = RULES.get(family)
        if self.unrestricted or rule is None or rule.owner is None or len(self.owners) > MAX_PARTITIONS:
            return None
        table = self._table(rule.table)
        owner = table.c[rule.owner]
        return [*(owner == user for user in sorted(self.owners)), sa.and_(owner.is_(None), self._parents(family))]

    def can_see(self, family: str, ident: str) -> bool:
        """Whether the record ``ident`` of ``family`` exists and is visible to this key."""
        condition = self.condition(family)
        if condition is None:
            return True
        table = self._table(RULES[family].table)
        with self.crm.read() as uow:
            assert uow.connection is not None
            return uow.connection.execute(sa.select(table.c.id).where(table.c.id == ident, condition)).first() is not None

    def check_record(self, family: str, record: Any) -> None:
        """Raise :class:`NotFound` — the same 404 as a missing record — unless ``record`` is visible."""
        ident = getattr(record, "id", None)
        if family in RULES and not self.unrestricted and (not isinstance(ident, str) or not self.can_see(family, ident)):
            raise NotFound(RULES[family].label, ident)

    def hidden(self, family: str) -> tuple[str, ...]:
        """The fields of ``family`` this key may not see."""
        return () if f"{PERSONAL_DATA}:read" in self.key.granted else tuple(SENSITIVE.get(family, ()))

    def hide(self, family: str, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (a serialised record) without the fields this key may not see."""
        hidden = self.hidden(family)
        return {name: value for name, value in data.items() if name not in hidden} if hidden else data

    def check_filters(self, family: str, filters: Iterable[str]) -> None:
        """A list may not be filtered on a field the key may not see (it would reveal values)."""
        used = [name for name in filters if name in self.hidden(family)]
        if used:
            raise self._forbidden_fields(used, "read", "filter on")

    # --- writing ------------------------------------------------------------------------

    def check_write(self, family: str, data: Mapping[str, Any]) -> None:
        """Refuse a body (create or change) that writes what the key may not: a sensitive field
        without ``personal_data:write`` (403), an owner outside reach (403), a reference to a
        record the key cannot see (422 ``not_found``, like a missing one)."""
        sensitive = [name for name in SENSITIVE.get(family, ()) if name in data]
        if sensitive and f"{PERSONAL_DATA}:write" not in self.key.granted:
            raise self._forbidden_fields(sensitive, "write", "write")
        if self.unrestricted or family not in RULES:
            return
        rule = RULES[family]
        owner = data.get(rule.owner) if rule.owner else None
        if isinstance(owner, str) and owner not in self.owners:
            who = f"user {self.key.user_id!r} and its team" if self.key.user_id else "no user (it may not own records)"
            raise ApiError(403, "forbidden", f"{rule.owner}: {owner!r} is not a user within this key's reach ({who})",
                           [FieldIssue(rule.owner, "out_of_reach", f"{owner!r} is not a user within this key's reach ({who})")])
        issues = [FieldIssue(column, "not_found", f"no {RULES[parent].label} with id {data[column]!r}")
                  for column, parent in rule.parents.items()
                  if isinstance(data.get(column), str) and not self.can_see(parent, data[column])]
        if issues:
            raise ValidationFailed(issues)

    def with_default_owner(self, family: str, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` for a new record: owned by the key's user when the body names no owner
        (team-scoped keys only, so what an agent creates is its own, not the shared pool)."""
        rule = RULES.get(family)
        if (self.unrestricted or rule is None or rule.owner is None or rule.owner in data
                or self.key.user_id is None or self.key.user_id not in self.owners):
            return data
        return {**data, rule.owner: self.key.user_id}

    # --- helpers ------------------------------------------------------------------------

    def _table(self, name: str) -> sa.Table:
        return self.crm.backend.metadata.tables[name]  # type: ignore[no-any-return]

    def _visible(self, family: str) -> sa.ColumnElement[bool]:
        rule = RULES[family]
        parents = self._parents(family)
        if rule.owner is None:
            return parents
        owner = self._table(rule.table).c[rule.owner]
        return sa.or_(owner.in_(sorted(self.owners)), sa.and_(owner.is_(None), parents))

    def _parents(self, family: str) -> sa.ColumnElement[bool]:
        """Each parent a record names is within reach (or none is named)."""
        rule = RULES[family]
        table = self._table(rule.table)
        return sa.and_(sa.true(), *(sa.or_(table.c[column].is_(None), table.c[column].in_(self._visible_ids(parent)))
                                    for column, parent in rule.parents.items()))

    def _visible_ids(self, family: str) -> sa.Select[Any]:
        table = self._table(RULES[family].table)
        # Never correlated with an enclosing query on the same table: each level stands alone.
        return sa.select(table.c.id).where(self._visible(family)).correlate(None)

    def _forbidden_fields(self, names: list[str], action: str, verb: str) -> ApiError:
        scope = f"{PERSONAL_DATA}:{action}"
        message = f"this API key (role {self.key.role.value}) may not {verb} {', '.join(names)}: that needs the scope {scope}"
        return ApiError(403, "forbidden", message, [FieldIssue(name, "needs_scope", f"needs the scope {scope}") for name in names])
