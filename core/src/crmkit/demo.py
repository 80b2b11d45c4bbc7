"""``crmkit demo``: a CRM with a few months of generated sales history, and its reports.

Everything goes through the public services, exactly as an application would use them:
contacts arrive through ``crm.intake.submit``, deals are created and moved with
``crm.deals.create`` / ``crm.deals.move`` (backdated with ``created_at`` / ``at`` to simulate
twelve weeks), activities are logged with ``crm.activities.log``. The data come from a seeded
:class:`random.Random`, so the same seed always tells the same story. It runs on embedded
SQLite in a temporary directory (or one you name, to explore it afterwards): no server needed.

Then every contact is sent a welcome e-mail through ``crm.messages`` — templated, through the
veto chain (some demo contacts never gave consent, some withdrew it, a few addresses bounced
before), queued and drained like a worker would — to an SMTP server started in this process.
The core does not know about e-mail: it asks the installed ``email`` channel for a local
stand-in (:class:`crmkit.channels.LocalSinkProvider`, which crmkit-email implements); without
one the welcome step is skipped and says why.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import phonenumbers
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

import crmkit
from crmkit import reports
from crmkit.channels import LocalSink, LocalSinkProvider
from crmkit.config import CONFIG_FILENAME, load_config, render_default_config
from crmkit.domain.values import utcnow
from crmkit.errors import ConfigError
from crmkit.plugins import hookimpl

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact, Deal, Event
    from crmkit.storage.uow import UnitOfWork

DEFAULT_SEED = 2024
DEFAULT_CONTACTS = 300
PIPELINE = "Sales"
SALES_STAGES: list[tuple[str, float, str]] = [
    ("Lead", 0.1, "open"), ("Qualified", 0.25, "open"), ("Proposal", 0.5, "open"),
    ("Negotiation", 0.75, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost"),
]
OPEN_STAGES = [name for name, _, outcome in SALES_STAGES if outcome == "open"]
#: Per open stage: the chance that the next step advances the deal, and that it loses it
#: (otherwise the deal stalls another few days).
NEXT_STEP = {"Lead": (0.6, 0.15), "Qualified": (0.6, 0.15), "Proposal": (0.6, 0.15), "Negotiation": (0.65, 0.15)}
#: What gets logged when a deal enters a stage: (activity kind, subject).
STAGE_ACTIVITY = {
    "Qualified": ("call", "Discovery call"), "Proposal": ("email.sent", "Proposal sent"),
    "Negotiation": ("meeting", "Terms review"), "Won": ("note", "Contract signed"),
}
LOST_REASONS = ("price", "chose a competitor", "no budget", "timing", "no response")
SIMULATED = timedelta(weeks=12)
#: What each new contact said about the newsletter on the form: consent granted, granted then
#: withdrawn, or nothing recorded — with these weights; and the share of addresses that had
#: hard-bounced before (on the suppression list).
CONSENT_CHOICES = (("granted", 0.7), ("withdrawn", 0.1), (None, 0.2))
BOUNCED_SHARE = 0.03
WELCOME_PURPOSE = "newsletter"
WELCOME_SUBJECT = "Welcome, {{ contact.first_name }}!"
WELCOME_BODY = """<p>Hi {{ contact.first_name }},</p>
<p>thanks for getting in touch{% if contact.job_title %} — we look forward to working with you as {{ contact.job_title }}{% endif %}.
You will hear from us about once a month.</p>
<p>The crmkit demo team</p>"""

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Ben", "Carla", "Chen", "Dana", "David", "Elena", "Emil", "Fatima", "Grace", "Hannah",
    "Hiro", "Ines", "Ivan", "Jamal", "Julia", "Kofi", "Lars", "Leila", "Lucas", "Maria", "Mateo", "Mei", "Nadia", "Noah",
    "Olga", "Omar", "Priya", "Rafael", "Rosa", "Sam", "Sofia", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe",
)
LAST_NAMES = (
    "Adams", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes", "Ito", "Jansen", "Kowalski", "Lopez",
    "Mensah", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Walsh", "Yilmaz", "Zhang",
)
ORGANIZATIONS = (
    ("Northwind Trading", "northwind.example.com", "Retail"), ("Contoso Health", "contoso.example.com", "Healthcare"),
    ("Fabrikam Tools", "fabrikam.example.com", "Manufacturing"), ("Tailspin Travel", "tailspin.example.com", "Travel"),
    ("Litware Labs", "litware.example.com", "Software"), ("Adatum Energy", "adatum.example.com", "Energy"),
    ("Wingtip Outfitters", "wingtip.example.com", "Retail"), ("Proseware Media", "proseware.example.com", "Media"),
    ("Lucerne Finance", "lucerne.example.com", "Finance"), ("Woodgrove Foods", "woodgrove.example.com", "Food"),
    ("Alpine Logistics", "alpine.example.com", "Logistics"), ("Blue Yonder Air", "blueyonder.example.com", "Travel"),
)
PERSONAL_DOMAINS = ("example.com", "example.org", "example.net")
JOB_TITLES = ("Head of Sales", "CTO", "Operations Manager", "Procurement Lead", "Founder", "Marketing Director", "Buyer")
#: Phone formats per region; digits are filled in at random and kept only if phonenumbers
#: says the result is a valid number (the intake validates them the same way).
PHONE_PATTERNS = (
    ("+1 {area} {d3} {d4}", ("212", "312", "415", "503", "617", "702", "737")),
    ("+44 20 7946 0{d3}", ("",)),
    ("+49 30 {d4}{d4}", ("",)),
)


class _EventCounter:
    """A subscriber plugin: the demo counts the events delivered to it, like any plugin would."""

    crmkit_plugin_name = "crmkit-demo-event-counter"

    def __init__(self) -> None:
        self.types: Counter[str] = Counter()

    @hookimpl
    def crmkit_handle_event(self, event: Event) -> None:
        self.types[event.type] += 1


@attrs.define
class _Story:
    """What the simulation did, for the totals printed at the end."""

    intake: Counter[str] = attrs.field(factory=Counter)
    organizations: int = 0
    deals: int = 0
    moves: int = 0
    activities: int = 0
    consents: Counter[str] = attrs.field(factory=Counter)
    bounced: list[tuple[str, str]] = attrs.field(factory=list)  # (contact id, address) that hard-bounced before


@attrs.define
class WelcomeReport:
    """The welcome e-mails: what the queue said, what the drain did, what the sink received."""

    sink: str
    queued: int = 0
    vetoed: Counter[str] = attrs.field(factory=Counter)  # by reason, at queueing and at sending
    sent: int = 0
    delivered: int = 0
    failed: int = 0


def _phone(rng: random.Random) -> str:
    while True:
        pattern, areas = rng.choice(PHONE_PATTERNS)
        number = pattern.format(area=rng.choice(areas), d3=f"{rng.randrange(200, 1000)}", d4=f"{rng.randrange(10_000):04d}")
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def _contact_records(rng: random.Random, count: int, organizations: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """``count`` different people (unique e-mail addresses and phone numbers, which the intake
    matches on); most work at one of ``organizations`` (``(id, domain)`` pairs)."""
    records: list[dict[str, Any]] = []
    used: set[str] = set()
    phones: set[str] = set()
    while len(records) < count:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        employer = rng.choice(organizations) if rng.random() < 0.65 else None
        domain = employer[1] if employer else rng.choice(PERSONAL_DOMAINS)
        local = f"{first}.{last}".lower()
        email = f"{local}@{domain}"
        suffix = 2
        while email in used:
            email, suffix = f"{local}{suffix}@{domain}", suffix + 1
        used.add(email)
        record: dict[str, Any] = {"first_name": first, "last_name": last, "email": email,
                                  "source": {"channel": rng.choice(("webform", "referral", "event", "ads"))}}
        phone = _phone(rng)
        if rng.random() < 0.7 and phone not in phones:
            record["phone"] = phone
            phones.add(phone)
        if employer:
            record["organization_id"] = employer[0]
            record["job_title"] = rng.choice(JOB_TITLES)
        records.append(record)
    return records


def _populate(crm: CRM, rng: random.Random, contacts: int, now: datetime) -> _Story:
    story = _Story()
    # Consent has its own random stream, so the sales story stays the same for a seed.
    consent_rng = random.Random(rng.random())
    start = now - SIMULATED
    crm.pipelines.create(PIPELINE, SALES_STAGES)
    organizations = []
    for name, domain, industry in ORGANIZATIONS:
        organization = crm.organizations.create({"name": name, "domain": domain, "industry": industry})
        organizations.append((organization.id, domain))
        story.organizations += 1

    records = _contact_records(rng, contacts, organizations)
    # A few people fill in the form twice: the intake matches them by e-mail and updates.
    repeats = [dict(r, job_title=rng.choice([t for t in JOB_TITLES if t != r.get("job_title")]))
               for r in rng.sample(records, k=max(1, contacts // 25))]
    for record in records + repeats:
        result = crm.intake.submit(record, source="webform")
        story.intake[result.record.outcome or "unknown"] += 1
        contact = result.contact
        if contact is None or result.record.outcome != "created":
            continue
        arrived = start + timedelta(seconds=rng.uniform(0, SIMULATED.total_seconds()))
        opened = arrived + timedelta(days=rng.uniform(0, 3))
        wants_deal = rng.random() < 0.5 and opened < now
        # Services' *_in methods share one unit of work: the form activity and the deal it led
        # to commit together (and it saves a transaction per contact).
        with crm.uow() as uow:
            crm.activities.log_in(uow, {"kind": "form.submitted", "contact_id": contact.id, "channel": "webform",
                                        "direction": "inbound", "subject": "Contact form", "occurred_at": arrived})
            story.activities += 1
            _record_consent(crm, uow, consent_rng, story, contact, arrived)
            deal = _open_deal(crm, uow, rng, story, contact, opened) if wants_deal else None
        if deal is not None:
            _work_deal(crm, rng, story, deal, now)
    return story


def _record_consent(crm: CRM, uow: UnitOfWork, rng: random.Random, story: _Story, contact: Contact, at: datetime) -> None:
    """The newsletter box on the form: ticked, ticked and later withdrawn, or left alone."""
    (choice,) = rng.choices([c for c, _ in CONSENT_CHOICES], weights=[w for _, w in CONSENT_CHOICES])
    story.consents[choice or "none"] += 1
    if choice is not None:
        crm.consents.record_in(uow, {"contact_id": contact.id, "channel": "email", "purpose": WELCOME_PURPOSE,
                                     "status": "granted", "recorded_at": at, "source": "webform"})
    if choice == "withdrawn":
        crm.consents.record_in(uow, {"contact_id": contact.id, "channel": "email", "purpose": WELCOME_PURPOSE,
                                     "status": "withdrawn", "recorded_at": at + timedelta(days=rng.uniform(1, 30)), "source": "preferences"})
    if contact.email and rng.random() < BOUNCED_SHARE:
        story.bounced.append((contact.id, contact.email))


def send_welcomes(crm: CRM, bounced: Sequence[tuple[str, str]] = ()) -> WelcomeReport | None:
    """Send every contact the welcome e-mail through ``crm.messages`` to the e-mail channel's
    local stand-in, and drain the queue; None when no channel named ``email`` offers one.
    ``bounced`` (contact id, address) pairs go on the suppression list first."""
    channel = crm.messages.channels.get("email")
    if not isinstance(channel, LocalSinkProvider):
        return None
    for contact_id, address in bounced:
        crm.messages.suppress("email", address, "hard_bounce", contact_id=contact_id)
    with channel.local_sink() as sink:
        return _send_welcomes(crm, sink)


def _send_welcomes(crm: CRM, sink: LocalSink) -> WelcomeReport:
    report = WelcomeReport(sink=sink.description)
    crm.messages.save_template("welcome", WELCOME_BODY, subject=WELCOME_SUBJECT, channel="email")
    for contact in crm.contacts.list(limit=None):
        if not contact.email:
            continue
        message = crm.messages.send(contact.id, "email", template="welcome", purpose=WELCOME_PURPOSE,
                                    idempotency_key=f"demo-welcome:{contact.id}")
        if message["status"] == "vetoed":
            report.vetoed[_veto_kind(message["veto_reason"])] += 1
        else:
            report.queued += 1
    drained = crm.messages.drain()  # what `crmkit worker` does; here in-process
    report.sent, report.failed = drained.sent, drained.retrying + drained.dead
    if drained.vetoed:
        report.vetoed["vetoed when sending"] += drained.vetoed
    report.delivered = sink.delivered()
    return report


def _veto_kind(reason: str | None) -> str:
    """``consent: withdrawn for email / newsletter`` → ``consent: withdrawn``."""
    return (reason or "unknown").split(" for ")[0].split(" (")[0]


def _open_deal(crm: CRM, uow: UnitOfWork, rng: random.Random, story: _Story, contact: Contact, created: datetime) -> Deal:
    amount = Decimal(round(rng.lognormvariate(8.8, 0.7), -2) or 100)
    story.deals += 1
    return crm.deals.create_in(uow, {
        "title": f"Deal {story.deals:03d}", "pipeline": PIPELINE, "contact_id": contact.id,
        "organization_id": contact.organization_id, "amount": amount,
        "currency": "EUR" if rng.random() < 0.2 else "USD", "created_at": created,
    })


def _work_deal(crm: CRM, rng: random.Random, story: _Story, deal: Deal, now: datetime) -> None:
    """A deal's life after it was created in Lead: a step every few days until it is won,
    lost, or the simulated period ends with it still open."""
    stage, at = OPEN_STAGES[0], deal.created_at
    while True:
        at += timedelta(days=rng.uniform(2, 9))
        if at > now:
            return
        advance, lose = NEXT_STEP[stage]
        roll = rng.random()
        if roll < advance:
            index = OPEN_STAGES.index(stage) + 1
            target = OPEN_STAGES[index] if index < len(OPEN_STAGES) else "Won"
            reason = None
        elif roll < advance + lose:
            target, reason = "Lost", rng.choice(LOST_REASONS)
        else:
            continue  # stalled: nothing happens this step
        crm.deals.move(deal.id, target, at=at, lost_reason=reason)
        story.moves += 1
        kind, subject = STAGE_ACTIVITY.get(target, ("note", f"Lost: {reason}"))
        crm.activities.log({"kind": kind, "contact_id": deal.contact_id, "deal_id": deal.id, "direction": "outbound",
                            "subject": subject, "occurred_at": at})
        story.activities += 1
        if target in ("Won", "Lost"):
            return
        stage = target


def percent(value: float | None) -> str:
    """A ratio as the funnel table shows it (``—`` when there is nothing to divide)."""
    return "—" if value is None else f"{value:.1%}"


def money(values: dict[str, Decimal]) -> str:
    return ", ".join(f"{currency} {amount:,.2f}" for currency, amount in values.items()) or "—"


def funnel_table(report: reports.FunnelReport) -> Table:
    table = Table(title=f"{report.pipeline.name} funnel (deals that reached at least each stage)", title_justify="left")
    for header in ("Stage", "Deals", "From previous", "From first", "Drop-off"):
        table.add_column(header, justify="left" if header == "Stage" else "right")
    for row in report.stages:
        table.add_row(row.stage.name, str(row.reached), percent(row.from_previous), percent(row.from_first), str(row.drop_off))
    table.add_section()
    for outcome in report.outcomes:
        table.add_row(outcome.stage.name, str(outcome.entered), "", percent(outcome.from_first), "")
    return table


def weighted_table(report: reports.WeightedPipeline) -> Table:
    table = Table(title=f"{report.pipeline.name} pipeline, open deals weighted by stage probability", title_justify="left")
    for header in ("Stage", "Probability", "Open deals", "Amount", "Weighted"):
        table.add_column(header, justify="left" if header == "Stage" else "right")
    for row in report.stages:
        table.add_row(row.stage.name, f"{row.stage.probability:.0%}", str(row.deals), money(row.amount), money(row.weighted))
    table.add_section()
    table.add_row("Total", "", str(report.deals), money(report.amount), money(report.weighted))
    return table


def totals_table(story: _Story, funnel: reports.FunnelReport, weighted: reports.WeightedPipeline,
                 contacts: int, events: int, elapsed: float) -> Table:
    intake = ", ".join(f"{n} {outcome}" for outcome, n in sorted(story.intake.items()))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Contacts", f"{contacts} (intake: {intake}), {story.organizations} organizations")
    grid.add_row("Deals", f"{story.deals}: {funnel.won} won, {funnel.lost} lost, {weighted.deals} open "
                          f"(win rate {percent(funnel.win_rate)}); {story.moves} stage moves")
    grid.add_row("Activities", str(story.activities))
    grid.add_row("Events", f"{events} delivered to subscribers from the outbox")
    grid.add_row("Built in", f"{elapsed:.1f} s on embedded SQLite")
    return grid


def welcome_table(report: WelcomeReport | None) -> RenderableType:
    """The welcome e-mails' outcomes (or why there were none), under a one-line heading."""
    if report is None:
        return Text("Welcome e-mails: skipped, no e-mail channel with a local SMTP sink is installed (pip install crmkit-email)")
    table = Table()
    table.add_column("Outcome")
    table.add_column("Messages", justify="right")
    table.add_row("Queued", str(report.queued))
    table.add_row("Sent", str(report.sent))
    table.add_row("Delivered to sink", str(report.delivered))
    table.add_row("Vetoed", str(sum(report.vetoed.values())))
    for reason, count in sorted(report.vetoed.items()):
        table.add_row(f"  {reason}", str(count))
    table.add_row("Failed", str(report.failed))
    return Group(Text(f"Welcome e-mails, sent through crm.messages to {report.sink} (started by the demo)"), table)


def open_demo_crm(directory: Path, plugins: Sequence[object] = (), *, dispatch_inline: bool = True) -> CRM:
    """Open the demo CRM in ``directory`` from its ``crmkit.toml``.

    The environment is deliberately ignored (``environ={}``): a ``CRMKIT_DATABASE_URL`` set for
    real work must never send generated data into that database.
    """
    config = load_config(directory / CONFIG_FILENAME, environ={})
    return crmkit.open(config, plugins=plugins, migrate=True, dispatch_inline=dispatch_inline)


def run_demo(directory: Path | None, console: Console, *, seed: int = DEFAULT_SEED, contacts: int = DEFAULT_CONTACTS) -> None:
    """Build a demo CRM in ``directory`` (a temporary one when None) and print its reports.

    :raises ConfigError: when ``directory`` already holds a CRM (the demo never adds generated
        data to existing records).
    """
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="crmkit-demo-") as temporary:
            _run(Path(temporary), console, seed=seed, contacts=contacts, keep=False)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for existing in (CONFIG_FILENAME, "crm.db"):
        if (directory / existing).exists():
            raise ConfigError(f"{directory / existing} exists already; give `crmkit demo --dir` an empty or new directory")
    _run(directory, console, seed=seed, contacts=contacts, keep=True)


def _run(directory: Path, console: Console, *, seed: int, contacts: int, keep: bool) -> None:
    (directory / CONFIG_FILENAME).write_text(render_default_config("sqlite:///crm.db"), encoding="utf-8")
    counter = _EventCounter()
    began = time.perf_counter()
    # Events wait in the outbox and are delivered in one drain at the end, as a worker would:
    # dispatching each of ~1,500 small commits on its own would double the demo's run time.
    with open_demo_crm(directory, [counter], dispatch_inline=False) as crm:
        with console.status("Generating twelve weeks of sales history…"):
            story = _populate(crm, random.Random(seed), contacts, utcnow())
        with console.status("Sending welcome e-mails to a local SMTP server…"):
            welcome = send_welcomes(crm, story.bounced)
        crm.events.drain()
        funnel = reports.funnel(crm, PIPELINE)
        weighted = reports.weighted_pipeline(crm, PIPELINE)
        contact_count = crm.contacts.count()
    elapsed = time.perf_counter() - began

    console.print(funnel_table(funnel))
    console.print(weighted_table(weighted))
    console.print(welcome_table(welcome))
    console.print(totals_table(story, funnel, weighted, contact_count, sum(counter.types.values()), elapsed))
    if keep:
        console.print(f"The CRM stays in {directory}; explore it with: CRMKIT_CONFIG={directory / CONFIG_FILENAME} crmkit deals history DEAL_ID")
