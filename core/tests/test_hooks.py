"""Every hook is documented (docstring and docs/hooks.md), tested, and does what it says.

The intake stages are exercised in ``test_intake_hooks.py``; ``crmkit_register_commands`` in
``test_plugin_in_test_file.py``.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from crmkit import Contact, hookimpl, hookspecs
from crmkit.errors import ConfigError, CRMError, PluginError
from crmkit.storage.sql.backend import SQLBackend

ROOT = Path(__file__).resolve().parents[2]
HOOKS: dict[str, Any] = {
    name: fn for name, fn in vars(hookspecs).items() if name.startswith("crmkit_") and hasattr(fn, f"{hookspecs.PROJECT}_spec")
}
#: ``crmkit_…`` names the docs may use that are not hooks.
NOT_HOOKS = {"crmkit_core", "crmkit_plugin_name", "crmkit_loyalty"}
OUR_DOCS = ("hooks.md", "plugin-authors.md", "architecture.md")


def params(name: str) -> list[str]:
    return list(inspect.signature(HOOKS[name]).parameters)


# --- the reference stays true ---------------------------------------------------------------


def test_hookspecs_are_found():
    assert {"crmkit_startup", "crmkit_handle_event", "crmkit_match", "crmkit_erase_personal_data"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_docstring_says_when_it_fires_what_it_takes_and_returns(name):
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert "Called" in doc, f"{name}: the docstring must say when the hook is called"
    documented = re.findall(r":param (\w+):", doc)
    assert documented == params(name), f"{name}: :param: entries {documented} do not match the signature {params(name)}"
    assert ":return:" in doc, f"{name}: the docstring must say what is returned"


def markdown(rst: str) -> str:
    """Docstring text as docs/hooks.md writes it: ``:func:`x``` and ````x```` become ```x```."""
    return " ".join(re.sub(r":\w+:`~?([^`]+)`", r"`\1`", rst).replace("``", "`").split())


def hook_sections() -> dict[str, tuple[list[str], str]]:
    """``name -> (parameter names, section text)`` for each ``### `hook(…)``` heading."""
    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    parts = re.split(r"^### `(crmkit_\w+)\(([^)]*)\)`[^\n]*$", text, flags=re.MULTILINE)
    sections = {}
    for name, signature, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        assert name not in sections, f"docs/hooks.md documents {name} twice"
        sections[name] = ([p.strip() for p in signature.split(",") if p.strip()], body.split("\n## ")[0])
    return sections


def test_docs_list_every_hook_and_no_other():
    documented = set(hook_sections())
    assert sorted(set(HOOKS) - documented) == [], "hooks missing from docs/hooks.md"
    assert sorted(documented - set(HOOKS)) == [], "docs/hooks.md documents hooks that do not exist"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_docs_signature_and_summary_match_the_hookspec(name):
    sections = hook_sections()
    if name not in sections:
        pytest.fail(f"{name} is not in docs/hooks.md")
    signature, body = sections[name]
    assert signature == params(name)
    summary = markdown((inspect.getdoc(HOOKS[name]) or "").split("\n\n")[0])
    assert summary in " ".join(body.split()), f"docs/hooks.md: {name} should open with its docstring's summary"
    firstresult = HOOKS[name].crmkit_spec.get("firstresult", False)
    assert ("first result" in body) == firstresult, f"docs/hooks.md: say whether {name} stops at the first result"


@pytest.mark.parametrize("doc", OUR_DOCS)
def test_docs_mention_only_hooks_that_exist(doc):
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    unknown = sorted(set(re.findall(r"\bcrmkit_\w+", text)) - set(HOOKS) - NOT_HOOKS)
    assert unknown == [], f"docs/{doc} mentions hooks that do not exist"


def test_every_hook_has_a_test_implementing_it():
    test_files = [*ROOT.glob("core/tests/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
    source = "\n".join(path.read_text(encoding="utf-8") for path in test_files)
    untested = [name for name in sorted(HOOKS) if not re.search(rf"\bdef {name}\(", source)]
    assert untested == [], "hooks no test implements"


# --- crmkit_register_settings --------------------------------------------------------------


@attrs.define
class LoyaltySettings:
    points_per_won_deal: int = 10
    tiers: list[str] = attrs.field(factory=lambda: ["silver", "gold"])


class SettingsPlugin:
    crmkit_plugin_name = "loyalty"

    @hookimpl
    def crmkit_register_settings(self, register: Any) -> None:
        register("loyalty", LoyaltySettings)


def write_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "crmkit.toml"
    path.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "crm.db"}"\n' + textwrap.dedent(body))
    return str(path)


def test_settings_are_validated_from_crmkit_toml(tmp_path, crm_factory):
    config = write_config(tmp_path, """
        [plugins.loyalty]
        points_per_won_deal = 25
        tiers = ["bronze"]
    """)
    crm = crm_factory(config, plugins=[SettingsPlugin()])
    assert crm.settings_for("loyalty") == LoyaltySettings(points_per_won_deal=25, tiers=["bronze"])


def test_settings_default_when_the_section_is_absent(crm_factory):
    assert crm_factory(plugins=[SettingsPlugin()]).settings_for("loyalty") == LoyaltySettings()


def test_bad_settings_name_file_section_and_key(tmp_path, crm_factory):
    config = write_config(tmp_path, """
        [plugins.loyalty]
        points_per_won_deal = "lots"
        colour = "gold"
    """)
    with pytest.raises(ConfigError) as excinfo:
        crm_factory(config, plugins=[SettingsPlugin()])
    message = str(excinfo.value)
    assert str(tmp_path / "crmkit.toml") in message
    assert "[plugins.loyalty].points_per_won_deal" in message
    assert "colour" in message


def test_section_no_plugin_declares_is_an_error(tmp_path, crm_factory):
    config = write_config(tmp_path, "[plugins.loyalti]\npoints_per_won_deal = 1\n")
    # Built-in plugins declare sections too (webhooks …): the declared list names them all.
    with pytest.raises(ConfigError, match=r"no plugin declares \[plugins.loyalti\] \(declared: [^)]*\bloyalty\b"):
        crm_factory(config, plugins=[SettingsPlugin()])


def test_settings_for_an_undeclared_section(crm):
    with pytest.raises(ConfigError, match="no plugin declared settings section 'loyalty'"):
        crm.settings_for("loyalty")


# --- crmkit_register_tables and crmkit_register_migrations (SQLite; all backends: test_migrations.py)


def points_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "loyalty_points", metadata,
        sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id"), primary_key=True),
        sa.Column("points", sa.Integer, nullable=False),
    )


class TablePlugin:
    crmkit_plugin_name = "loyalty"

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(points_table(metadata))


MIGRATION = '''\
"""loyalty points"""
import sqlalchemy as sa
from alembic import op

revision = "loyalty0001"
down_revision = None
branch_labels = ("loyalty",)
depends_on = "crmkit_core"


def upgrade() -> None:
    op.create_table(
        "loyalty_points",
        sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", name="fk_loyalty_points_contact_id_contacts"), primary_key=True),
        sa.Column("points", sa.Integer, nullable=False),
    )
'''


class MigratedTablePlugin(TablePlugin):
    def __init__(self, versions: Path):
        self.versions = versions

    @hookimpl
    def crmkit_register_migrations(self, register: Any) -> None:
        register("loyalty", str(self.versions))


def insert_points(crm: Any, contact_id: str, points: int) -> None:
    with crm.uow() as uow:
        uow.connection.execute(sa.insert(uow.table("loyalty_points")).values(contact_id=contact_id, points=points))


def test_plugin_table_without_migrations_is_created_from_its_definition(crm_factory):
    crm = crm_factory(plugins=[TablePlugin()])
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    insert_points(crm, contact.id, 5)
    with crm.read() as uow:
        assert uow.connection.execute(sa.select(uow.table("loyalty_points").c.points)).scalar_one() == 5
    with pytest.raises(sa.exc.IntegrityError):  # the foreign key to the core table is real
        insert_points(crm, "no-such-contact", 1)


def test_plugin_migration_branch(tmp_path, crm_factory):
    versions = tmp_path / "loyalty_versions"
    versions.mkdir()
    (versions / "loyalty0001_points.py").write_text(MIGRATION)
    url = f"sqlite:///{tmp_path / 'branches.db'}"
    core_heads = crm_factory(url).backend.current()  # a database migrated before the plugin came

    with pytest.raises(CRMError, match="loyalty0001.*crmkit db upgrade"):
        crm_factory(url, plugins=[MigratedTablePlugin(versions)], migrate=False)

    crm = crm_factory(url, plugins=[MigratedTablePlugin(versions)], migrate=True)
    assert crm.backend.current() == sorted([*core_heads, "loyalty0001"])
    assert crm.backend.unmigrated_tables == []  # the branch owns the table, so no create_all for it
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    insert_points(crm, contact.id, 7)
    # Reopening without migrate accepts the database now.
    assert crm_factory(url, plugins=[MigratedTablePlugin(versions)], migrate=False).backend.current() == crm.backend.current()


# --- crmkit_register_storage_backends -------------------------------------------------------


class ArchiveBackend(SQLBackend):
    """``archive:///path`` is a SQLite file under another name — enough to prove the scheme
    and its factory come from the plugin."""

    def __init__(self, url: str, **kwargs: Any):
        super().__init__("sqlite" + url.removeprefix("archive"), **kwargs)


class ArchiveStorage:
    crmkit_plugin_name = "archive-storage"

    @hookimpl
    def crmkit_register_storage_backends(self, register: Any) -> None:
        register("archive", ArchiveBackend)


def test_storage_backend_from_a_plugin_opens_the_crm(tmp_path, crm_factory):
    crm = crm_factory(f"archive:///{tmp_path / 'archive.db'}", plugins=[ArchiveStorage()])
    assert type(crm.backend) is ArchiveBackend
    contact = crm.intake.submit({"email": "ada@example.com"}).contact

    reopened = crm_factory(f"sqlite:///{tmp_path / 'archive.db'}")
    assert reopened.contacts.get(contact.id).email == "ada@example.com"


def test_url_scheme_without_backend(crm_factory):
    with pytest.raises(ConfigError, match=r"no storage backend for 'archive' URLs \(installed: mariadb, mysql, postgresql, sqlite\)"):
        crm_factory("archive:///nowhere.db")


# --- crmkit_register_event_types, crmkit_handle_event, crmkit_startup ----------------------


class Loyalty:
    """Awards points when a deal is won and announces them with its own event type."""

    crmkit_plugin_name = "loyalty"

    def __init__(self) -> None:
        self.started_with: list[int] = []

    @hookimpl
    def crmkit_register_event_types(self, register: Any) -> None:
        register("loyalty.points_awarded", "a contact earned loyalty points")

    @hookimpl
    def crmkit_startup(self, crm: Any) -> None:
        self.started_with.append(crm.contacts.count())  # the CRM is fully usable here

    @hookimpl
    def crmkit_handle_event(self, event: Any, crm: Any) -> None:
        if event.type == "deal.won":
            deal = crm.deals.get(event.subject_id)
            with crm.uow() as uow:
                uow.emit("loyalty.points_awarded", deal.contact_id, {"points": 10, "deal_id": deal.id})


def won_deal(crm: Any) -> tuple[Any, Any]:
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")])
    deal = crm.deals.create({"title": "Licence", "pipeline": "Sales", "contact_id": contact.id, "amount": "1200"})
    crm.deals.move(deal.id, "Won")
    return contact, deal


def test_plugin_event_type_emitted_from_a_handler(crm_factory, events):
    loyalty = Loyalty()
    crm = crm_factory(plugins=[loyalty])
    assert crm.event_types.owners["loyalty.points_awarded"] == "loyalty"
    assert loyalty.started_with == [0]

    contact, deal = won_deal(crm)

    awarded = [e for e in events.events if e.type == "loyalty.points_awarded"]
    assert [(e.subject_id, e.data) for e in awarded] == [(contact.id, {"points": 10, "deal_id": deal.id})]


def test_emitting_an_unregistered_event_type_fails_and_writes_nothing(crm):
    before = crm.events.counts()
    with pytest.raises(CRMError, match=r"event type 'loyalty.points_awarded' is not registered"):
        with crm.uow() as uow:
            uow.contacts.add(Contact(email="ada@example.com"))
            uow.emit("loyalty.points_awarded", None, {})
    assert crm.contacts.count() == 0
    assert crm.events.counts() == before


class Flaky:
    crmkit_plugin_name = "flaky"

    @hookimpl
    def crmkit_handle_event(self, event: Any) -> None:
        raise ConnectionError("webhook endpoint is down")


def test_failing_event_handler_is_isolated_and_recorded(crm_factory, events):
    crm = crm_factory(plugins=[Flaky()])
    contact = crm.intake.submit({"email": "ada@example.com"}).contact

    assert crm.contacts.get(contact.id).email == "ada@example.com"  # the write stands
    assert events.types() == ["contact.created"]  # the other subscriber was called
    [failure] = crm.events.failures()
    assert (failure["subscriber"], failure["type"], failure["status"]) == ("flaky", "contact.created", "failed")
    assert "webhook endpoint is down" in failure["last_error"]


# --- crmkit_export_personal_data and crmkit_erase_personal_data -----------------------------


class Newsletter:
    """Keeps its own copy of subscribers' addresses: personal data the core knows nothing of."""

    crmkit_plugin_name = "newsletter"

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table(
            "newsletter_subscribers", metadata,
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id"), primary_key=True),
            sa.Column("address", sa.String(255), nullable=False),
            sa.Column("list_name", sa.String(64), nullable=False),
        ))

    @hookimpl
    def crmkit_export_personal_data(self, contact: Contact, crm: Any) -> dict[str, Any] | None:
        with crm.read() as uow:
            table = uow.table("newsletter_subscribers")
            rows = uow.connection.execute(sa.select(table.c.address, table.c.list_name).where(table.c.contact_id == contact.id)).all()
        return {"newsletter": [dict(r._mapping) for r in rows]} if rows else None

    @hookimpl
    def crmkit_erase_personal_data(self, contact: Contact, uow: Any) -> None:
        table = uow.table("newsletter_subscribers")
        uow.connection.execute(sa.delete(table).where(table.c.contact_id == contact.id))


class RefusesErasure:
    """Runs after the other plugins' erasers (``trylast``), having written something itself."""

    crmkit_plugin_name = "legal-hold"

    @hookimpl(trylast=True)
    def crmkit_erase_personal_data(self, contact: Contact, uow: Any) -> None:
        uow.connection.execute(sa.update(uow.table("contacts")).where(uow.table("contacts").c.id == contact.id).values(job_title="on hold"))
        raise PermissionError("contact is under legal hold")


def subscribe(crm: Any, email: str) -> Contact:
    contact = crm.intake.submit({"email": email, "first_name": "Ada"}).contact
    with crm.uow() as uow:
        uow.connection.execute(sa.insert(uow.table("newsletter_subscribers")).values(contact_id=contact.id, address=email, list_name="monthly"))
    return contact


def subscribers(crm: Any) -> list[str]:
    with crm.read() as uow:
        return list(uow.connection.execute(sa.select(uow.table("newsletter_subscribers").c.address)).scalars())


def test_export_includes_the_plugin_section(crm_factory):
    crm = crm_factory(plugins=[Newsletter()])
    contact = subscribe(crm, "ada@example.com")
    other = crm.intake.submit({"email": "bob@example.com"}).contact

    exported = crm.privacy.export(contact.id)
    assert exported["newsletter"] == [{"address": "ada@example.com", "list_name": "monthly"}]
    assert exported["contact"]["email"] == "ada@example.com"  # the core's own section
    assert "newsletter" not in crm.privacy.export(other.id)  # None means: nothing held


def test_export_section_clash_names_both(crm_factory):
    class Shadow:
        crmkit_plugin_name = "shadow"

        @hookimpl
        def crmkit_export_personal_data(self) -> dict[str, Any]:
            return {"newsletter": []}

    crm = crm_factory(plugins=[Newsletter(), Shadow()])
    contact = subscribe(crm, "ada@example.com")
    with pytest.raises(PluginError) as excinfo:
        crm.privacy.export(contact.id)
    assert "'shadow'" in str(excinfo.value) and "'newsletter'" in str(excinfo.value)


def test_erase_clears_the_plugin_table_with_the_core_rows(crm_factory, events):
    crm = crm_factory(plugins=[Newsletter()])
    contact = subscribe(crm, "ada@example.com")
    subscribe(crm, "bob@example.com")

    crm.privacy.erase(contact.id)

    assert subscribers(crm) == ["bob@example.com"]
    erased = crm.contacts.get(contact.id)
    assert (erased.email, erased.first_name) == (None, None)
    assert [(e.type, e.subject_id, e.data) for e in events.events][-1] == ("contact.erased", contact.id, {})


def test_failing_eraser_erases_nothing(crm_factory, events):
    crm = crm_factory(plugins=[Newsletter(), RefusesErasure()])
    contact = subscribe(crm, "ada@example.com")

    with pytest.raises(PluginError, match="plugin 'legal-hold': crmkit_erase_personal_data failed: PermissionError"):
        crm.privacy.erase(contact.id)

    # The newsletter's delete ran in the same transaction and was rolled back with it.
    assert subscribers(crm) == ["ada@example.com"]
    kept = crm.contacts.get(contact.id)
    assert (kept.email, kept.first_name, kept.job_title) == ("ada@example.com", "Ada", None)
    assert "contact.erased" not in events.types()
