"""Automation rules: when an event (or a scheduled check) matches a rule's trigger and
conditions, run its actions — create a task, set a field, move a deal, add a tag, call a
webhook, send a message.

* :mod:`.conditions` — the safe condition language (data, never eval'd);
* :mod:`.rules` — rule definitions, checked in full when saved;
* :mod:`.registry` — :class:`TriggerType` and :class:`ActionType`, which plugins register
  through ``crmkit_register_automation_triggers`` / ``crmkit_register_automation_actions``;
* :mod:`.engine` and :mod:`.runs` — running rules once per (rule, event), after the
  triggering write committed;
* :mod:`.service` — ``crm.automations``.

The built-in plugin :mod:`crmkit.builtin.automation_plugin` wires it into the CRM.
"""

from crmkit.automation.registry import ActionContext, ActionFailed, ActionType, CheckContext, TriggerType
from crmkit.automation.rules import Rule
from crmkit.automation.runs import Run
from crmkit.automation.service import Automations, automations

__all__ = ["ActionContext", "ActionFailed", "ActionType", "Automations", "CheckContext", "Rule", "Run", "TriggerType", "automations"]
