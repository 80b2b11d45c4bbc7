"""Text templates in rule actions (a task's title …): Jinja2 in a sandbox, checked at save time.

Templates render in a :class:`~jinja2.sandbox.SandboxedEnvironment` with
:class:`~jinja2.StrictUndefined` against plain dicts of the facts a rule sees, never entity
objects, so a template cannot reach crmkit's internals. When a rule is saved each template is
parsed, its variables are checked against the facts its trigger offers, and it is rendered
against a sample of those facts, so ``{{ contact.frist_name }}`` is refused when the rule is
saved rather than when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from crmkit.errors import FieldIssue

#: Names every template may use besides the trigger's facts.
ALWAYS_AVAILABLE = frozenset({"rule", "now"})


def environment() -> SandboxedEnvironment:
    # A missing field of a present record is an error (StrictUndefined); an empty optional
    # value renders as "" rather than "None".
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=lambda v: "" if v is None else v)


def check(source: Any, where: str, available: frozenset[str], sample: Mapping[str, Any]) -> FieldIssue | None:
    """The problem with a template, or None: syntax, unknown variables, or failing on a sample."""
    if not isinstance(source, str):
        return FieldIssue(where, "invalid_type", "must be text (a template such as 'Call {{ contact.first_name }}')")
    env = environment()
    try:
        parsed = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return FieldIssue(where, "invalid_template", f"line {exc.lineno}: {exc.message}")
    unknown = sorted(meta.find_undeclared_variables(parsed) - available - ALWAYS_AVAILABLE)
    if unknown:
        names = ", ".join(sorted(available | ALWAYS_AVAILABLE))
        return FieldIssue(where, "unknown_variable", f"{', '.join(unknown)} is not available to this rule (available: {names})")
    try:
        env.from_string(source).render(**sample)
    except jinja2.TemplateError as exc:
        return FieldIssue(where, "invalid_template", str(exc))
    except Exception as exc:  # a filter misused on the sample (e.g. | round on text)
        return FieldIssue(where, "invalid_template", f"{type(exc).__name__}: {exc}")
    return None


def render(source: str, context: Mapping[str, Any]) -> str:
    return environment().from_string(source).render(**context)
