"""``crmkit activities``, ``tasks``, ``campaigns`` and ``consents``: what happens around contacts."""

from __future__ import annotations

from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import JSON_OBJECT, emit, json_option, print_table
from crmkit.cli.records import FieldOption, add_create_command, add_list_command, page, paging_options, report

ACTIVITY_FIELDS = (
    FieldOption("--kind", "kind", "What happened: note, call, meeting, email.sent … (required)."),
    FieldOption("--contact", "contact_id", "Contact id."),
    FieldOption("--deal", "deal_id", "Deal id."),
    FieldOption("--organization", "organization_id", "Organization id."),
    FieldOption("--channel", "channel", "Channel, e.g. phone, email, web."),
    FieldOption("--direction", "direction", "inbound, outbound or internal."),
    FieldOption("--subject", "subject", "Subject or summary."),
    FieldOption("--occurred-at", "occurred_at", "When it happened (ISO 8601; default: now)."),
    FieldOption("--payload", "payload", 'Details as a JSON object, e.g. \'{"minutes": 12}\'.', type=JSON_OBJECT),
    FieldOption("--external-id", "external_id", "Id in the source system; logging the same channel + id again is a no-op."),
)

TASK_FIELDS = (
    FieldOption("--title", "title", "What to do (required)."),
    FieldOption("--notes", "notes", "Details."),
    FieldOption("--due", "due_at", "When it is due (ISO 8601)."),
    FieldOption("--assignee", "assignee_id", "User id of the assignee."),
    FieldOption("--contact", "contact_id", "Contact id."),
    FieldOption("--deal", "deal_id", "Deal id."),
)

CAMPAIGN_FIELDS = (
    FieldOption("--name", "name", "Name (required)."),
    FieldOption("--channel", "channel", "Channel, e.g. email, ads, event."),
    FieldOption("--spend", "spend", "Money spent."),
    FieldOption("--currency", "currency", "ISO 4217 code."),
    FieldOption("--starts-on", "starts_on", "First day, YYYY-MM-DD."),
    FieldOption("--ends-on", "ends_on", "Last day, YYYY-MM-DD."),
)

CONSENT_FIELDS = (
    FieldOption("--contact", "contact_id", "Contact id (required)."),
    FieldOption("--channel", "channel", "Channel, e.g. email, sms (required)."),
    FieldOption("--purpose", "purpose", "Purpose, e.g. marketing (required)."),
    FieldOption("--status", "status", "granted or withdrawn (required)."),
    FieldOption("--source", "source", "Where the consent was given, e.g. webform."),
    FieldOption("--evidence", "evidence", "Proof as a JSON object (form id, IP, the text shown …).", type=JSON_OBJECT),
    FieldOption("--recorded-at", "recorded_at", "When (ISO 8601; default: now)."),
)

TASK_COLUMNS = (
    ("id", lambda t: t.id), ("title", lambda t: t.title), ("due", lambda t: t.due_at),
    ("assignee", lambda t: t.assignee_id), ("done", lambda t: t.done_at),
)


def activities_group() -> click.Group:
    @click.group("activities")
    def activities() -> None:
        """The interaction log: add (append-only), list."""

    add_create_command(activities, service="activities", method="log", fields=ACTIVITY_FIELDS, help="Log an activity.",
                       summary=lambda a: f"Activity logged: {a.id} {a.kind}")
    add_list_command(activities, title="Activities", service="activities", columns=(
        ("id", lambda a: a.id), ("when", lambda a: a.occurred_at), ("kind", lambda a: a.kind),
        ("subject", lambda a: a.subject), ("contact", lambda a: a.contact_id),
    ), filters=(
        FieldOption("--contact", "contact_id", "Only this contact's activities."),
        FieldOption("--deal", "deal_id", "Only this deal's activities."),
        FieldOption("--kind", "kind", "Only activities of this kind."),
    ))
    return activities


def tasks_group() -> click.Group:
    @click.group("tasks")
    def tasks() -> None:
        """To-dos: add, list, done."""

    add_create_command(tasks, service="tasks", fields=TASK_FIELDS, help="Add a task.", summary=lambda t: f"Task added: {t.id} {t.title}")

    @tasks.command("list")
    @click.option("--assignee", default=None, metavar="USER_ID", help="Only tasks of this user.")
    @click.option("--all", "all_", is_flag=True, help="Include done tasks (paged with --limit/--after).")
    @paging_options
    @json_option
    @pass_crm
    def list_(crm: Any, assignee: str | None, all_: bool, limit: int, after: str | None, as_json: bool) -> None:
        """List open tasks (or all with --all)."""
        rows = page(crm.tasks, limit, after, assignee_id=assignee) if all_ else crm.tasks.open_tasks(assignee)
        emit(as_json, rows, lambda: print_table("Tasks", rows, TASK_COLUMNS))

    @tasks.command("done")
    @click.argument("task_id")
    @json_option
    @pass_crm
    def done(crm: Any, task_id: str, as_json: bool) -> None:
        """Mark TASK_ID as done."""
        task = crm.tasks.complete(task_id)
        report(as_json, task, f"Task done: {task.id} {task.title}")

    return tasks


def campaigns_group() -> click.Group:
    @click.group("campaigns")
    def campaigns() -> None:
        """Marketing campaigns: add, list."""

    add_create_command(campaigns, service="campaigns", fields=CAMPAIGN_FIELDS, help="Add a campaign.",
                       summary=lambda c: f"Campaign added: {c.id} {c.name}")
    add_list_command(campaigns, title="Campaigns", service="campaigns", columns=(
        ("id", lambda c: c.id), ("name", lambda c: c.name), ("channel", lambda c: c.channel),
        ("spend", lambda c: f"{c.spend} {c.currency}"), ("starts", lambda c: c.starts_on), ("ends", lambda c: c.ends_on),
    ))
    return campaigns


def consents_group() -> click.Group:
    @click.group("consents")
    def consents() -> None:
        """The consent ledger: record, list."""

    add_create_command(consents, name="record", service="consents", method="record", fields=CONSENT_FIELDS,
                       help="Append a consent entry (the latest per contact, channel and purpose is the current state).",
                       summary=lambda c: f"Consent recorded: {c.contact_id} {c.channel}/{c.purpose} {c.status.value}")

    @consents.command("list")
    @click.argument("contact_id")
    @json_option
    @pass_crm
    def list_(crm: Any, contact_id: str, as_json: bool) -> None:
        """The consent history of CONTACT_ID, oldest first."""
        rows = crm.consents.history(contact_id)
        emit(as_json, rows, lambda: print_table("Consents", rows, (
            ("when", lambda c: c.recorded_at), ("channel", lambda c: c.channel), ("purpose", lambda c: c.purpose),
            ("status", lambda c: c.status.value), ("source", lambda c: c.source))))

    return consents
