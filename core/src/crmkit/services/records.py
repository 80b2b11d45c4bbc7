"""Services for contacts, organizations, campaigns, users and teams: validated CRUD."""

from __future__ import annotations

from typing import Any

from crmkit import domain
from crmkit.domain import fields as f
from crmkit.errors import FieldIssue, NotFound, ValidationFailed
from crmkit.services.base import EntityService, ValidationContext

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


class UserService(EntityService[domain.User]):
    repo_name, kind, entity_cls = "users", "user", domain.User

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"team_id": "teams"})
        email = clean.get("email")
        users = context.uow.users
        if email and users.first(users.where(email=email)) is not None:
            raise ValidationFailed.single("email", "duplicate", f"a user with e-mail {email} exists already")
