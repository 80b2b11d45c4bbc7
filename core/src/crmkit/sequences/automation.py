"""The ``enroll_in_sequence`` automation action: a rule enrolls the contact its event concerns
(``{"type": "enroll_in_sequence", "sequence": "welcome"}``). Registered by the sequences
plugin through ``crmkit_register_automation_actions``, like any third party's action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmkit.automation.registry import ActionContext, ActionType, CheckContext
from crmkit.domain import fields as f
from crmkit.errors import FieldIssue, NotFound
from crmkit.sequences.service import sequences


def _check(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    try:
        sequences(context.crm).get(params["sequence"])
    except NotFound:
        return [context.issue("sequence", "not_found", f"no sequence named {params['sequence']!r}")]
    return []


def _enroll(context: ActionContext) -> dict[str, Any]:
    contact = context.record("contact")
    assert context.uow is not None  # transactional: the enrollment commits with the run's progress
    ident = sequences(context.crm).enroll_in(context.uow, context.params["sequence"], contact["id"], now=context.now)
    return {"enrollment_id": ident}


ENROLL_IN_SEQUENCE = ActionType(
    name="enroll_in_sequence",
    description="enroll the contact in a nurture sequence (`sequence`: its name); a contact already in it stays where it is",
    run=_enroll,
    params=(f.FieldSpec("sequence", f.text(100), required=True),),
    needs=frozenset({"contact"}),
    check=_check,
)
