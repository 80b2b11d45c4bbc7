"""Services for contacts, organizations, campaigns, users and teams: validated CRUD."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit import domain
from crmkit.domain import fields as f
from crmkit.errors import FieldIssue, NotFound, ValidationFailed
from crmkit.services.base import EntityService, ValidationContext

if TYPE_CHECKING:
    from crmkit.storage.uow import UnitOfWork

IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name")


def check_references(context: ValidationContext, clean: dict[str, Any], refs: dict[str, str]) -> None:
    """Every ``*_id`` given must name an existing record; report all missing ones at once."""
    issues = []
    for field, repo_name in refs.items():
        ident = clean.get(field)
        if ident is not None and not context.exists(repo_name, ident):
            issues.append(FieldIssue(field, "not_found", f"no {repo_name[:-1]} with id {ident!r}"))
    if issues:
        raise ValidationFailed(issues)


class ContactService(EntityService[domain.Contact]):
    repo_name, kind, entity_cls, custom_entity = "contacts", "contact", domain.Contact, "contact"

    def specs(self) -> list[f.FieldSpec]:
        return domain.Contact.field_specs(self.crm.config.default_region)

    def get(self, ident: str) -> domain.Contact:
        """The contact; for one merged into another, the error says which (``MergedAway``)."""
        try:
            return super().get(ident)
        except NotFound:
            merged = self.crm.merges.merged_into(ident)
            if merged is None:
                raise
            from crmkit.merge.records import MergedAway

            raise MergedAway(ident, merged.survivor_id, merged.id) from None

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        if not partial and not any(clean.get(name) for name in IDENTITY_FIELDS):
            raise ValidationFailed.single("email", "required", "a contact needs at least one of email, phone, first_name or last_name")
        source = clean.get("source")
        check_references(context, {"owner_id": clean.get("owner_id"), "organization_id": clean.get("organization_id"),
                               "source.campaign_id": getattr(source, "campaign_id", None)},
                         {"owner_id": "users", "organization_id": "organizations", "source.campaign_id": "campaigns"})

    def find_by_email(self, email: str) -> domain.Contact | None:
        with self.crm.read() as uow:
            return uow.contacts.first(uow.contacts.where(email=email.strip().lower()))


class OrganizationService(EntityService[domain.Organization]):
    repo_name, kind, entity_cls, custom_entity = "organizations", "organization", domain.Organization, "organization"

    def specs(self) -> list[f.FieldSpec]:
        return domain.Organization.field_specs(self.crm.config.default_region)

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"owner_id": "users"})


class CampaignService(EntityService[domain.Campaign]):
    repo_name, kind, entity_cls = "campaigns", "campaign", domain.Campaign

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        starts, ends = clean.get("starts_on"), clean.get("ends_on")
        if starts and ends and ends < starts:
            raise ValidationFailed.single("ends_on", "before_start", "a campaign cannot end before it starts")


class TeamService(EntityService[domain.Team]):
    repo_name, kind, entity_cls = "teams", "team", domain.Team

    def specs(self) -> list[f.FieldSpec]:
        return [f.FieldSpec("name", f.text(255), required=True)]

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        # Names are unique ignoring case: "Sales" and "sales" would be one team to a person
        # picking an owner's team (the table's constraint alone is case-sensitive on some
        # databases, and would surface as a bare conflict).
        name = clean.get("name")
        if name:
            teams = context.uow.teams.table
            taken = context.uow.teams.first([sa.func.lower(teams.c.name) == name.lower()])
            if taken is not None:
                raise ValidationFailed.single("name", "duplicate", f"a team named {taken.name!r} exists already")


class UserService(EntityService[domain.User]):
    repo_name, kind, entity_cls = "users", "user", domain.User

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"team_id": "teams"})
        if not partial:  # a change is checked in update_in, which knows whose e-mail it is
            self._refuse_taken_email(context.uow, clean.get("email"), None)

    def update_in(self, uow: UnitOfWork, ident: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> domain.User:
        if "email" in changes:
            # Checked here, where it is known whose e-mail it is: a user keeping (or
            # re-sending) its own e-mail is not its own duplicate. Before the write, so a
            # taken e-mail is a 422 naming the field rather than the unique index's conflict.
            self._refuse_taken_email(uow, self.parse(uow, changes, partial=True).get("email"), ident)
        return super().update_in(uow, ident, changes, expected_version=expected_version)

    @staticmethod
    def _refuse_taken_email(uow: UnitOfWork, email: str | None, own_id: str | None) -> None:
        if not email:
            return
        users = uow.users
        conditions = users.where(email=email)
        if own_id is not None:
            conditions.append(users.table.c.id != own_id)
        if users.first(conditions) is not None:
            raise ValidationFailed.single("email", "duplicate", f"a user with e-mail {email} exists already")
