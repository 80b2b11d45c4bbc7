"""``crmkit deals``: opportunities moving through a pipeline, with their stage history."""

from __future__ import annotations

from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_json, print_table, say
from crmkit.cli.records import FieldOption, add_record_commands, field_options, page, paging_options, print_page, record_input
from crmkit.domain import Outcome

DEAL_FIELDS = (
    FieldOption("--title", "title", "What is being sold."),
    FieldOption("--contact", "contact_id", "Contact id."),
    FieldOption("--organization", "organization_id", "Organization id."),
    FieldOption("--amount", "amount", "Value, e.g. 1000 or 1250.50."),
    FieldOption("--currency", "currency", "ISO 4217 code (default: the configured default currency)."),
    FieldOption("--expected-close", "expected_close", "Expected close date, YYYY-MM-DD."),
    FieldOption("--owner", "owner_id", "Owning user id."),
)


def stage_names(crm: Any) -> dict[str, str]:
    """Stage id → name over every pipeline (a deal's history may span pipelines)."""
    return {stage.id: stage.name for pipeline in crm.pipelines.list() for stage in pipeline.stages}


def placement(crm: Any, deal: Any) -> dict[str, str]:
    """The names of the deal's pipeline and stage, for people (the record holds ids)."""
    pipeline = crm.pipelines.get(deal.pipeline_id)
    return {"pipeline": pipeline.name, "stage": pipeline.stage_named(deal.stage_id).name}


def history_rows(crm: Any, deal_id: str) -> list[dict[str, Any]]:
    names = stage_names(crm)
    return [
        {
            "id": change.id,
            "from": names.get(change.from_stage_id) if change.from_stage_id else None,
            "from_stage_id": change.from_stage_id,
            "to": names.get(change.to_stage_id),
            "to_stage_id": change.to_stage_id,
            "changed_at": change.changed_at,
            "changed_by": change.changed_by,
        }
        for change in crm.deals.history(deal_id)
    ]


def deals_group() -> click.Group:
    @click.group("deals")
    def deals() -> None:
        """Deals: add, list, show, move between stages, history, update, delete."""

    @deals.command("add")
    @field_options(DEAL_FIELDS)
    @click.option("--pipeline", default=None, metavar="PIPELINE", help="Pipeline name or id (required).")
    @click.option("--stage", default=None, metavar="STAGE", help="Stage name or id (default: the pipeline's first stage).")
    @json_option
    @pass_crm
    def add(crm: Any, pipeline: str | None, stage: str | None, as_json: bool, **options: Any) -> None:
        """Add a deal to a pipeline."""
        data = record_input(DEAL_FIELDS, options)
        data.update({k: v for k, v in (("pipeline", pipeline), ("stage", stage)) if v is not None})
        deal = crm.deals.create(data)

        def created() -> None:
            where = placement(crm, deal)
            say(f"Deal created: {deal.id} {deal.title} ({deal.amount} {deal.currency}) in {where['pipeline']} / {where['stage']}")

        emit(as_json, deal, created)

    @deals.command("list")
    @paging_options
    @click.option("--pipeline", default=None, metavar="PIPELINE", help="Only deals in this pipeline (name or id).")
    @click.option("--status", type=click.Choice([o.value for o in Outcome], case_sensitive=False), default=None, help="Only open, won or lost deals.")
    @click.option("--contact", default=None, metavar="CONTACT_ID", help="Only deals of this contact.")
    @click.option("--owner", default=None, metavar="USER_ID", help="Only deals owned by this user.")
    @json_option
    @pass_crm
    def list_(crm: Any, limit: int, after: str | None, pipeline: str | None, status: str | None, contact: str | None,
              owner: str | None, as_json: bool) -> None:
        """List deals, oldest first."""
        pipeline_id = crm.pipelines.get(pipeline).id if pipeline else None
        rows = page(crm.deals, limit, after, pipeline_id=pipeline_id, status=status, contact_id=contact, owner_id=owner)
        if as_json:
            print_json(rows)
            return
        names = stage_names(crm)
        print_page("Deals", rows, (
            ("id", lambda d: d.id), ("title", lambda d: d.title), ("amount", lambda d: f"{d.amount} {d.currency}"),
            ("stage", lambda d: names.get(d.stage_id, d.stage_id)), ("status", lambda d: d.status.value),
        ), limit)

    @deals.command("move")
    @click.argument("deal_id")
    @click.argument("stage")
    @click.option("--pipeline", default=None, metavar="PIPELINE", help="Move into a stage of this pipeline (needs --allow-pipeline-change).")
    @click.option("--allow-pipeline-change", is_flag=True, help="Allow moving the deal to another pipeline.")
    @click.option("--lost-reason", default=None, help="Why the deal was lost (when moving to a lost stage).")
    @click.option("--expected-version", type=int, default=None, metavar="N", help="Refuse if the deal is no longer at version N.")
    @json_option
    @pass_crm
    def move(crm: Any, deal_id: str, stage: str, pipeline: str | None, allow_pipeline_change: bool, lost_reason: str | None,
             expected_version: int | None, as_json: bool) -> None:
        """Move DEAL_ID to STAGE (name or id); the move is recorded in the deal's history."""
        deal, change = crm.deals.move(deal_id, stage, pipeline=pipeline, allow_pipeline_change=allow_pipeline_change,
                                      lost_reason=lost_reason, expected_version=expected_version)
        def moved() -> None:
            names = stage_names(crm)
            say(f"Deal {deal.id} moved: {names.get(change.from_stage_id or '', '—')} → {names[change.to_stage_id]} ({deal.status.value})")

        emit(as_json, deal, moved)

    @deals.command("history")
    @click.argument("deal_id")
    @json_option
    @pass_crm
    def history(crm: Any, deal_id: str, as_json: bool) -> None:
        """The stage changes of DEAL_ID, oldest first."""
        rows = history_rows(crm, deal_id)
        emit(as_json, rows, lambda: print_table(f"History of deal {deal_id}", rows, (
            ("when", lambda r: r["changed_at"]), ("from", lambda r: r["from"] or "—"), ("to", lambda r: r["to"]),
            ("by", lambda r: r["changed_by"]))))

    add_record_commands(deals, kind="deal", service="deals", fields=DEAL_FIELDS, describe=placement)
    return deals
