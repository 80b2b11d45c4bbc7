"""``crmkit sms``: segment counts and campaign cost estimates."""

from __future__ import annotations

import json
from typing import Any

import click
from crmkit.cli import pass_crm

from crmkit_sms.estimate import estimate
from crmkit_sms.segments import CAPACITY, measure


def sms_group() -> click.Group:
    @click.group("sms")
    def sms() -> None:
        """SMS: segment counts and cost estimates."""

    @sms.command("segments")
    @click.argument("text")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def segments(text: str, as_json: bool) -> None:
        """How many segments TEXT is sent in, and in which encoding."""
        counted = measure(text)
        result = {"encoding": counted.encoding.value, "units": counted.units, "segments": counted.count,
                  "per_segment": counted.per_part, "single_limit": CAPACITY[counted.encoding][0]}
        if as_json:
            click.echo(json.dumps(result))
        else:
            unit = "septets" if counted.encoding.value == "GSM-7" else "UTF-16 units"
            click.echo(f"{counted.count} segment(s), {counted.encoding.value}, {counted.units} {unit} "
                       f"(up to {counted.per_part} per segment)")

    @sms.command("estimate")
    @click.option("--template", default=None, metavar="NAME", help="A saved template.")
    @click.option("--body", default=None, metavar="TEXT", help="Or the text itself (a template too).")
    @click.option("--price", required=True, metavar="AMOUNT", help="Price per segment, e.g. 0.0079.")
    @click.option("--contact", "contacts", multiple=True, metavar="ID", help="A recipient (repeatable); default: every contact with a phone.")
    @click.option("--purpose", default=None, help="Also leave out whom the veto chain would refuse for this purpose (e.g. marketing).")
    @click.option("--campaign", "campaign_id", default=None, metavar="ID", help="The campaign the text refers to as {{ campaign }}.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_crm
    def estimate_command(crm: Any, template: str | None, body: str | None, price: str, contacts: tuple[str, ...],
                         purpose: str | None, campaign_id: str | None, as_json: bool) -> None:
        """What sending a text to the recipients will cost, in segments and money."""
        result = estimate(crm, list(contacts) or None, price, body=body, template=template, purpose=purpose, campaign_id=campaign_id)
        if as_json:
            click.echo(json.dumps(result.as_dict()))
            return
        click.echo(f"{result.recipients} recipient(s), {result.segments} segment(s) × {result.price_per_segment} = {result.cost}")
        for encoding, totals in result.by_encoding.items():
            if totals["messages"]:
                click.echo(f"  {encoding}: {totals['messages']} message(s), {totals['segments']} segment(s)")
        for reason, number in result.skipped.items():
            click.echo(f"  skipped ({reason}): {number}")

    return sms
