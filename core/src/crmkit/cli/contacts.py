"""``crmkit contacts`` and ``crmkit organizations``: the people and companies in the CRM.

New contacts go through the intake pipeline (``crm.intake.submit``) like every other way in,
so duplicates are matched and plugins see the record."""

from __future__ import annotations

from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option
from crmkit.cli.records import (
    FieldOption,
    add_create_command,
    add_list_command,
    add_record_commands,
    field_options,
    page,
    paging_options,
    print_page,
    record_input,
    report,
)
from crmkit.domain import LifecycleStage
from crmkit.errors import NotFound
from crmkit.intake import OnDuplicate

CONTACT_FIELDS = (
    FieldOption("--email", "email", "E-mail address."),
    FieldOption("--first-name", "first_name", "First name."),
    FieldOption("--last-name", "last_name", "Last name."),
    FieldOption("--phone", "phone", "Phone number (+country code, or the configured default region)."),
    FieldOption("--job-title", "job_title", "Job title."),
    FieldOption("--organization", "organization_id", "Organization id."),
    FieldOption("--owner", "owner_id", "Owning user id."),
    FieldOption("--lifecycle-stage", "lifecycle_stage", "subscriber, lead, mql, sql, opportunity, customer, evangelist or churned."),
    FieldOption("--tag", "tags", "A tag (repeat for several).", multiple=True),
)

ORGANIZATION_FIELDS = (
    FieldOption("--name", "name", "Name."),
    FieldOption("--domain", "domain", "Web domain, e.g. example.com."),
    FieldOption("--industry", "industry", "Industry."),
    FieldOption("--size", "size", "Size band, e.g. 11-50."),
    FieldOption("--phone", "phone", "Phone number."),
    FieldOption("--owner", "owner_id", "Owning user id."),
    FieldOption("--tag", "tags", "A tag (repeat for several).", multiple=True),
)

CONTACT_COLUMNS = (
    ("id", lambda c: c.id),
    ("name", lambda c: " ".join(p for p in (c.first_name, c.last_name) if p)),
    ("email", lambda c: c.email),
    ("phone", lambda c: c.phone),
    ("stage", lambda c: c.lifecycle_stage.value),
    ("tags", lambda c: c.tags),
)

ORGANIZATION_COLUMNS = (
    ("id", lambda o: o.id),
    ("name", lambda o: o.name),
    ("domain", lambda o: o.domain),
    ("industry", lambda o: o.industry),
    ("tags", lambda o: o.tags),
)


def find_contact(crm: Any, reference: str) -> Any:
    """A contact by id, or by e-mail address when the reference has an ``@``."""
    if "@" not in reference:
        return crm.contacts.get(reference)
    contact = crm.contacts.find_by_email(reference)
    if contact is None:
        raise NotFound("contact", reference)
    return contact


def contacts_group() -> click.Group:
    @click.group("contacts")
    def contacts() -> None:
        """People: add, list, show, update, delete."""

    @contacts.command("add")
    @field_options(CONTACT_FIELDS)
    @click.option("--on-duplicate", type=click.Choice([o.value for o in OnDuplicate]), default=OnDuplicate.UPDATE.value,
                  show_default=True, help="When the contact matches an existing one: update it, skip, or create another.")
    @json_option
    @pass_crm
    def add(crm: Any, on_duplicate: str, as_json: bool, **options: Any) -> None:
        """Add a contact through the intake pipeline (matching duplicates)."""
        result = crm.intake.submit(record_input(CONTACT_FIELDS, options), source="cli", on_duplicate=on_duplicate)
        contact, outcome = result.contact, result.record.outcome
        report(as_json, contact, f"Contact {outcome}: {contact.id} {contact.display_name}" if contact else f"Contact {outcome}")

    @contacts.command("list")
    @paging_options
    @click.option("--email", default=None, help="Only the contact with this e-mail address (the other filters are then ignored).")
    @click.option("--lifecycle-stage", type=click.Choice([s.value for s in LifecycleStage], case_sensitive=False), default=None,
                  help="Only contacts in this lifecycle stage.")
    @click.option("--owner", default=None, metavar="USER_ID", help="Only contacts owned by this user.")
    @click.option("--organization", default=None, metavar="ORG_ID", help="Only contacts of this organization.")
    @json_option
    @pass_crm
    def list_(crm: Any, limit: int, after: str | None, email: str | None, lifecycle_stage: str | None,
              owner: str | None, organization: str | None, as_json: bool) -> None:
        """List contacts, oldest first."""
        if email:
            rows = [c for c in [crm.contacts.find_by_email(email)] if c is not None]
        else:
            rows = page(crm.contacts, limit, after, lifecycle_stage=lifecycle_stage, owner_id=owner, organization_id=organization)
        emit(as_json, rows, lambda: print_page("Contacts", rows, CONTACT_COLUMNS, limit))

    add_record_commands(contacts, kind="contact", service="contacts", fields=CONTACT_FIELDS, lookup=find_contact)
    return contacts


def organizations_group() -> click.Group:
    @click.group("organizations")
    def organizations() -> None:
        """Companies: add, list, show, update, delete."""

    add_create_command(organizations, service="organizations", fields=ORGANIZATION_FIELDS, custom=True, help="Add an organization.",
                       summary=lambda o: f"Organization created: {o.id} {o.name}")
    add_list_command(organizations, title="Organizations", service="organizations", columns=ORGANIZATION_COLUMNS, filters=(
        FieldOption("--domain", "domain", "Only organizations with this domain."),
        FieldOption("--owner", "owner_id", "Only organizations owned by this user."),
    ))
    add_record_commands(organizations, kind="organization", service="organizations", fields=ORGANIZATION_FIELDS)
    return organizations
