"""Message templates: Jinja2 in a sandbox, checked when they are saved.

Templates render in a :class:`~jinja2.sandbox.SandboxedEnvironment` (no access to ``__class__``,
``__globals__``, private attributes or unsafe callables) with :class:`~jinja2.StrictUndefined`,
against plain dicts built from the contact, deal and campaign — never the entity objects, so a
template cannot reach crmkit's internals. Saving a template parses it, lists its undeclared
variables with :func:`jinja2.meta.find_undeclared_variables` (only ``contact``, ``deal`` and
``campaign`` exist) and renders it against a sample context with every field of those entities
(and the CRM's custom fields) filled in, so ``{{ contact.frist_name }}`` is an error when the
template is saved, not when the message is sent.

HTML bodies (on a channel that carries HTML, when the template source looks like HTML) render
with autoescaping on, so data cannot inject markup: a contact named ``<script>`` prints as
``&lt;script&gt;``. Text bodies and subjects render with autoescaping off — escaping there would
print ``O&#39;Brien``. The decision is taken on the *template*, never on the rendered text, and
travels with the message (``html``), so a name that looks like a tag cannot turn a text message
into HTML either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import re

import attrs
import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from crmkit import domain
from crmkit.domain.custom_fields import CustomFieldDefinition, FieldType
from crmkit.domain.values import utcnow
from crmkit.errors import FieldIssue, ValidationFailed

#: The names a template may use, and the entity each one stands for.
CONTEXT_ENTITIES: dict[str, type] = {"contact": domain.Contact, "deal": domain.Deal, "campaign": domain.Campaign}


_HTML = re.compile(r"<\s*(html|body|p|div|br|table|a|span|h[1-6]|ul|ol|strong|em|b|i|img)\b", re.IGNORECASE)


def looks_like_html(source: str) -> bool:
    """Whether a body template (or, for messages from before crmkit recorded it, a body) is HTML."""
    return bool(_HTML.search(source))


def environment(*, html: bool = False) -> SandboxedEnvironment:
    """The sandbox; ``html`` turns autoescaping on (HTML bodies), off for text and subjects."""
    # None renders as "" so an empty optional field (a missing last name) does not print "None";
    # a *missing* field is still an error thanks to StrictUndefined.
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=html, finalize=lambda v: "" if v is None else v)


def entity_context(entity: object | None) -> dict[str, Any] | None:
    """A template's view of an entity: its fields as plain data (nested values too)."""
    return None if entity is None else attrs.asdict(entity, recurse=True)  # type: ignore[arg-type]


_SAMPLES: tuple[tuple[str, Any], ...] = (
    ("datetime", utcnow()), ("date", date(2000, 1, 1)), ("Decimal", Decimal("100.00")), ("float", 1.0),
    ("int", 1), ("bool", True), ("list", []), ("dict", {}),
)
_CUSTOM_SAMPLES = {FieldType.TEXT: "Sample", FieldType.NUMBER: Decimal(1), FieldType.DATE: date(2000, 1, 1), FieldType.BOOL: True}


def _sample_of(cls: type) -> dict[str, Any]:
    """Every field of ``cls`` with a plausible value, so filters such as ``| upper`` or
    ``| round`` work on the sample as they will on real data."""
    values: dict[str, Any] = {}
    for field in attrs.fields(cls):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default  # type: ignore[attr-defined]
        if attrs.has(type(default)):
            values[field.name] = attrs.asdict(default, recurse=True)
            for key, value in values[field.name].items():
                values[field.name][key] = "Sample" if value is None else value
        elif default is not attrs.NOTHING and default is not None and not isinstance(default, (dict, list)):
            values[field.name] = default
        else:
            annotation = str(field.type)
            values[field.name] = next((v for name, v in _SAMPLES if name in annotation.split("|")[0]), "Sample")
    return values


def sample_context(custom_fields: Iterable[CustomFieldDefinition] = ()) -> dict[str, Any]:
    context = {name: _sample_of(cls) for name, cls in CONTEXT_ENTITIES.items()}
    for definition in custom_fields:
        if definition.entity in context:
            sample = definition.choices[0] if definition.type is FieldType.CHOICE and definition.choices else _CUSTOM_SAMPLES.get(definition.type, "Sample")
            context[definition.entity]["custom"][definition.name] = sample
    return context


@attrs.frozen
class CheckedTemplate:
    """A template that parsed and rendered against the sample context, and the context
    entities it uses (a send must supply them)."""

    sources: dict[str, str]
    uses: tuple[str, ...]


def check(sources: Mapping[str, str | None], custom_fields: Iterable[CustomFieldDefinition] = ()) -> CheckedTemplate:
    """Validate template sources (``{"body": …, "subject": …}``), collecting every issue, each
    naming its field; raises :class:`ValidationFailed`."""
    sample = sample_context(custom_fields)
    issues: list[FieldIssue] = []
    uses: set[str] = set()
    checked: dict[str, str] = {}
    for field, source in sources.items():
        if source is None:
            continue
        env = environment(html=field == "body" and looks_like_html(source))
        try:
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            issues.append(FieldIssue(field, "template_syntax", f"line {exc.lineno}: {exc.message}"))
            continue
        undeclared = meta.find_undeclared_variables(ast)
        unknown = sorted(undeclared - set(CONTEXT_ENTITIES))
        if unknown:
            issues.append(FieldIssue(field, "unknown_variable", f"unknown variable(s) {', '.join(unknown)}; templates may use {', '.join(CONTEXT_ENTITIES)}"))
            continue
        try:
            env.from_string(ast).render(sample)
        except SecurityError as exc:
            issues.append(FieldIssue(field, "unsafe_template", f"the template reaches something templates may not use: {exc}"))
            continue
        except jinja2.UndefinedError as exc:
            issues.append(FieldIssue(field, "missing_variable", f"{exc.message}; templates may use the fields of {', '.join(CONTEXT_ENTITIES)}"))
            continue
        except Exception as exc:  # a filter applied to the wrong type, a division by zero …
            issues.append(FieldIssue(field, "template_error", f"rendering against a sample contact failed: {type(exc).__name__}: {exc}"))
            continue
        uses |= undeclared
        checked[field] = source
    if issues:
        raise ValidationFailed(issues)
    return CheckedTemplate(checked, tuple(sorted(uses)))


def render(source: str, context: Mapping[str, Any], field: str = "body", *, html: bool = False) -> str:
    """Render with real data (``html``: with autoescaping); an error names the field (data can
    still surprise a checked template, e.g. a custom field added to the sample later)."""
    try:
        return environment(html=html).from_string(source).render(context)
    except SecurityError as exc:
        raise ValidationFailed.single(field, "unsafe_template", str(exc)) from None
    except jinja2.UndefinedError as exc:
        raise ValidationFailed.single(field, "missing_variable", exc.message or str(exc)) from None
    except jinja2.TemplateError as exc:
        raise ValidationFailed.single(field, "template_error", str(exc)) from None
