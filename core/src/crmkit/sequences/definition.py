"""Sequence definitions: ordered steps (delay, channel, template, purpose) and exit conditions,
checked in full before anything is saved.

A definition is plain data (JSON / TOML)::

    name = "welcome"
    exit_on = ["replied", "converted", "unsubscribed"]   # the default

    [[steps]]                      # sent at the first tick after enrolment
    channel = "email"
    template = "welcome-1"         # a template saved with crm.messages.save_template
    purpose = "marketing"

    [[steps]]
    delay = "3d"                   # seconds, or 1d12h / 90m / 45s …
    after = "previous"             # or "enrollment"
    channel = "email"
    subject = "Still curious, {{ contact.first_name }}?"
    body = "…"                     # saved as template "welcome.step2" through the channel layer
    purpose = "marketing"

A step's message is checked the way the channel layer checks templates when they are saved
(syntax, sandbox, every variable), so a misspelt ``{{ contact.frist_name }}`` fails here, not
three days later. A sequence sends to a contact alone, so its templates may only use
``{{ contact }}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.channels import templates
from crmkit.domain import fields as f
from crmkit.errors import FieldIssue, NotFound, ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM

EXIT_REASONS = ("replied", "converted", "unsubscribed")
AFTER = ("previous", "enrollment")
MAX_STEPS = 50
MAX_DELAY = timedelta(days=366)
NAME_LENGTH = 80  # leaves room for ".stepNN" in the names of the templates a sequence saves
_DELAY = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_delay(value: Any, field: str) -> int:
    """Seconds (an integer) or ``1d12h30m15s`` (any of the parts, in that order) → seconds."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValidationFailed.single(field, "invalid_type", "a delay is a number of seconds or text such as '3d' or '1d12h'")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DELAY.fullmatch(value.strip().lower()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise ValidationFailed.single(field, "invalid", f"{value!r} is not a delay; write seconds or e.g. '3d', '12h', '1d12h', '90m'")
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds < 0 or seconds > MAX_DELAY.total_seconds():
        raise ValidationFailed.single(field, "out_of_range", f"a delay is between 0 and {MAX_DELAY.days} days")
    return seconds


def _choice(options: tuple[str, ...]) -> f.Parser:
    def parse(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if value not in options:
            raise ValidationFailed.single(field, "invalid", f"{value!r} is not one of {', '.join(options)}")
        return str(value)

    return parse


STEP_FIELDS = (
    f.FieldSpec("delay", parse_delay),
    f.FieldSpec("after", _choice(AFTER)),
    f.FieldSpec("channel", f.text(32), required=True),
    f.FieldSpec("template", f.text(100)),
    f.FieldSpec("subject", f.text(500)),
    f.FieldSpec("body", f.text(10_000)),
    f.FieldSpec("purpose", f.text(64), required=True),
)


@attrs.frozen(kw_only=True)
class Step:
    """One message of a sequence. ``delay_seconds`` counts from the enrolment or from when the
    previous step was sent (``after``)."""

    delay_seconds: int
    after: str
    channel: str
    template: str
    purpose: str

    @property
    def delay(self) -> timedelta:
        return timedelta(seconds=self.delay_seconds)

    def due(self, enrolled_at: datetime, previous_at: datetime | None) -> datetime:
        base = enrolled_at if self.after == "enrollment" or previous_at is None else previous_at
        return base + self.delay


@attrs.frozen(kw_only=True)
class Sequence:
    id: str
    name: str
    description: str | None
    steps: tuple[Step, ...]
    exit_on: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    version: int

    def uses(self, channel: str, purpose: str | None = None) -> bool:
        """Whether any step sends on ``channel`` (for ``purpose``, when given)."""
        return any(s.channel == channel and purpose in (None, s.purpose) for s in self.steps)


@attrs.frozen(kw_only=True)
class Draft:
    """A checked definition and the templates saving it will store first."""

    name: str
    description: str | None
    steps: tuple[Step, ...]
    exit_on: tuple[str, ...]
    new_templates: tuple[tuple[str, str, str | None, str], ...]  # (name, body, subject, channel)


def parse_definition(data: Any, crm: CRM) -> Draft:
    """Check a sequence definition; every issue names its place (``steps[1].body``).

    :raises ValidationFailed: with all of them; nothing is saved.
    """
    if not isinstance(data, Mapping):
        raise ValidationFailed.single("sequence", "invalid_type", "a sequence is an object with name, steps and optionally exit_on, description")
    issues: list[FieldIssue] = []
    issues += [FieldIssue(key, "unknown_field", "is not part of a sequence (name, description, steps, exit_on)")
               for key in sorted(set(data) - {"name", "description", "steps", "exit_on"})]
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_LENGTH:
        issues.append(FieldIssue("name", "invalid", f"a sequence name is 1 to {NAME_LENGTH} characters"))
        name = ""
    name = name.strip()
    description = data.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 2000):
        issues.append(FieldIssue("description", "invalid", "a description is text of at most 2000 characters"))
    exit_on = data.get("exit_on", list(EXIT_REASONS))
    if not isinstance(exit_on, list | tuple) or any(r not in EXIT_REASONS for r in exit_on):
        issues.append(FieldIssue("exit_on", "invalid", f"a list of exit conditions among {', '.join(EXIT_REASONS)}"))
        exit_on = list(EXIT_REASONS)
    raw_steps = data.get("steps")
    steps: list[Step] = []
    new_templates: list[tuple[str, str, str | None, str]] = []
    if not isinstance(raw_steps, list | tuple) or not raw_steps:
        issues.append(FieldIssue("steps", "required", "a sequence needs a list of one or more steps"))
    elif len(raw_steps) > MAX_STEPS:
        issues.append(FieldIssue("steps", "too_many", f"at most {MAX_STEPS} steps"))
    else:
        custom = crm.custom_fields.list()
        for index, raw in enumerate(raw_steps):
            try:
                step, template = _parse_step(raw, index, name, crm, custom)
            except ValidationFailed as exc:
                issues.extend(exc.issues)
                continue
            steps.append(step)
            if template is not None:
                new_templates.append(template)
    if issues:
        raise ValidationFailed(issues)
    return Draft(name=name, description=description, steps=tuple(steps), exit_on=tuple(r for r in EXIT_REASONS if r in exit_on),
                 new_templates=tuple(new_templates))


def _parse_step(raw: Any, index: int, sequence: str, crm: CRM, custom: Any) -> tuple[Step, tuple[str, str, str | None, str] | None]:
    where = f"steps[{index}]"
    if not isinstance(raw, Mapping):
        raise ValidationFailed.single(where, "invalid_type", "a step is an object with channel, template or body, purpose and delay")
    issues = []
    channel = raw.get("channel")
    if isinstance(channel, str) and channel.strip() and channel.strip() not in crm.messages.channels:
        known = ", ".join(sorted(crm.messages.channels)) or "none installed"
        issues.append(FieldIssue(f"{where}.channel", "unknown_channel", f"no channel named {channel!r} (known: {known})"))
    try:
        clean = f.parse_input(raw, STEP_FIELDS, prefix=f"{where}.")
    except ValidationFailed as exc:
        raise ValidationFailed([*exc.issues, *issues]) from None
    channel, template, body, subject = clean["channel"], clean.get("template"), clean.get("body"), clean.get("subject")
    if (template is None) == (body is None):
        issues.append(FieldIssue(f"{where}.template", "template_or_body", "give either a saved template's name or a body"))
    elif template is not None and subject is not None:
        issues.append(FieldIssue(f"{where}.subject", "with_template", "the saved template has its own subject; give subject only with body"))
    uses: tuple[str, ...] = ()
    new = None
    if template is not None and not issues:
        try:
            saved = crm.messages.template(template)
        except NotFound:
            raise ValidationFailed.single(f"{where}.template", "not_found", f"no saved template {template!r}") from None
        if saved["channel"] not in (None, channel):
            issues.append(FieldIssue(f"{where}.template", "wrong_channel", f"template {template!r} is for {saved['channel']}, not {channel}"))
        uses = tuple(saved["uses"])
    elif body is not None:
        try:
            uses = templates.check({"body": body, "subject": subject}, custom).uses
        except ValidationFailed as exc:
            issues += [FieldIssue(f"{where}.{i.field}", i.code, i.message) for i in exc.issues]
        template = f"{sequence}.step{index + 1}"
        new = (template, body, subject, channel)
    beyond = sorted(set(uses) - {"contact"})
    if beyond:
        issues.append(FieldIssue(f"{where}.{'body' if body is not None else 'template'}", "unavailable_variable",
                                 f"a sequence sends to a contact alone; {', '.join(beyond)} cannot be filled in"))
    if issues:
        raise ValidationFailed(issues)
    assert template is not None
    step = Step(delay_seconds=clean.get("delay") or 0, after=clean.get("after") or "previous", channel=channel, template=template,
                purpose=clean["purpose"])
    return step, new
