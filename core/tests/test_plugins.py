"""The plugin manager's guarantees: one manager per CRM, built-ins registered like anyone else,
entry points, allow/deny lists, and every plugin failure reported with the plugin's name."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.cli import build_cli, main
from crmkit.errors import ConfigError, PluginError
from crmkit.plugins import BUILTIN_PLUGINS, make_plugin_manager

NO_ENV: dict[str, str] = {}


class Recorder:
    """A plugin instance with its own name that records the events it sees."""

    def __init__(self, name: str):
        self.crmkit_plugin_name = name
        self.seen: list[str] = []

    @hookimpl
    def crmkit_handle_event(self, event: Any) -> None:
        self.seen.append(event.type)


def names(plugins: Any) -> set[str]:
    return {info.name for info in plugins.info()}


# --- one manager per CRM, no import-time state -------------------------------------------


def test_each_crm_gets_its_own_plugin_manager(crm_factory):
    first, second = Recorder("first"), Recorder("second")
    crm_a = crm_factory(plugins=[first])
    crm_b = crm_factory(plugins=[second])

    assert crm_a.plugins.pm is not crm_b.plugins.pm
    assert "first" in names(crm_a.plugins) and "second" not in names(crm_a.plugins)
    assert "second" in names(crm_b.plugins) and "first" not in names(crm_b.plugins)

    crm_a.intake.submit({"email": "ada@example.com"})
    assert first.seen == ["contact.created"]
    assert second.seen == []


def test_importing_crmkit_builds_no_plugin_manager():
    # A fresh interpreter, so modules already imported by this test session prove nothing.
    probe = textwrap.dedent("""
        import sys
        import pluggy
        built = []
        original = pluggy.PluginManager.__init__
        def counting(self, *args, **kwargs):
            built.append(args)
            original(self, *args, **kwargs)
        pluggy.PluginManager.__init__ = counting
        import crmkit, crmkit.cli, crmkit.plugins, crmkit.hookspecs, crmkit.testing
        loaded = sorted(m for m in sys.modules if m.startswith("crmkit.builtin"))
        print(len(built), loaded)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0 []"


def test_builtins_are_listed_as_plugins():
    plugins = make_plugin_manager(load_entry_points=False, environ=NO_ENV, extra_plugins=[Recorder("house")])
    info = {p.name: p for p in plugins.info()}

    for module in BUILTIN_PLUGINS:
        assert info[module].builtin is True
        assert info[module].distribution == "crmkit"
        assert info[module].hooks, f"{module} implements no hook"
    assert "crmkit_register_storage_backends" in info["crmkit.builtin.sql_storage"].hooks
    assert info["house"].builtin is False
    assert info["house"].hooks == ["crmkit_handle_event"]


# --- entry points --------------------------------------------------------------------------


@pytest.fixture
def install_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Write a real distribution — a module plus ``*.dist-info`` with ``entry_points.txt`` —
    and put it on ``sys.path``, where ``importlib.metadata`` finds it like an installed one."""
    modules: list[str] = []

    def install(dist: str, module: str, source: str, entry_points: dict[str, str], version: str = "1.0.0") -> None:
        site = tmp_path / f"site-{dist}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[crmkit]\n" + "".join(f"{n} = {v}\n" for n, v in entry_points.items()))
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)


GREETER = """
    from crmkit import hookimpl

    @hookimpl
    def crmkit_register_event_types(register):
        register("greeter.greeted", "someone was greeted")
"""


def test_entry_points_are_loaded(install_distribution, crm_factory):
    install_distribution("crmkit-greeter", "crmkit_greeter", GREETER, {"greeter": "crmkit_greeter"}, version="1.2.3")
    assert "greeter" in {ep.name for ep in importlib.metadata.entry_points(group="crmkit")}

    crm = crm_factory()
    info = {p.name: p for p in crm.plugins.info()}
    assert info["greeter"].distribution == "crmkit-greeter"
    assert info["greeter"].version == "1.2.3"
    assert info["greeter"].builtin is False
    assert info["greeter"].hooks == ["crmkit_register_event_types"]
    assert crm.event_types.owners["greeter.greeted"] == "greeter"

    # The installed module handed in again (as a plugin's own tests do) is registered once.
    again = crm_factory(plugins=[importlib.import_module("crmkit_greeter")])
    assert [p.name for p in again.plugins.info() if "greeter" in p.name] == ["greeter"]

    # load_entry_points=False is how an embedding application opts out.
    assert "greeter" not in names(crm_factory(load_entry_points=False).plugins)


def test_entry_point_that_fails_to_import_names_the_plugin(install_distribution, crm_factory):
    install_distribution("crmkit-broken", "crmkit_broken", "raise ImportError('libfoo is not installed')\n", {"broken": "crmkit_broken"})

    with pytest.raises(PluginError) as excinfo:
        crm_factory()
    assert excinfo.value.plugin == "broken"
    assert "crmkit_broken" in str(excinfo.value) and "libfoo is not installed" in str(excinfo.value)


def test_disabled_entry_point_is_never_imported(install_distribution, monkeypatch):
    install_distribution("crmkit-broken", "crmkit_broken", "raise ImportError('libfoo is not installed')\n", {"broken": "crmkit_broken"})
    monkeypatch.setenv("CRMKIT_DISABLE_PLUGINS", "broken")

    assert "broken" not in names(make_plugin_manager())
    assert "crmkit_broken" not in sys.modules


def test_two_distributions_claiming_one_plugin_name_is_an_error(install_distribution):
    install_distribution("crmkit-greeter", "crmkit_greeter", GREETER, {"greeter": "crmkit_greeter"})
    install_distribution("other-greeter", "other_greeter", GREETER, {"greeter": "other_greeter"})

    with pytest.raises(PluginError) as excinfo:
        make_plugin_manager(environ=NO_ENV)
    message = str(excinfo.value)
    assert "'greeter'" in message and "crmkit-greeter" in message and "other-greeter" in message


def test_cli_refuses_an_installed_plugin_with_a_misspelled_hook(install_distribution, tmp_path, monkeypatch, capsys):
    source = """
        from crmkit import hookimpl

        @hookimpl
        def crmkit_handle_evnt(event):
            pass
    """
    install_distribution("crmkit-typo", "crmkit_typo", source, {"typo": "crmkit_typo"})
    monkeypatch.chdir(tmp_path)  # no stray crmkit.toml

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "plugin 'typo'" in err and "crmkit_handle_evnt" in err and "crmkit_handle_event" in err


# --- allow and deny lists -------------------------------------------------------------------


def test_allow_list_loads_only_the_named_plugins():
    plugins = make_plugin_manager(
        enabled=["sql_storage", "crmkit.builtin.core_events", "house"],
        extra_plugins=[Recorder("house"), Recorder("guest")],
        load_entry_points=False,
        environ=NO_ENV,
    )
    assert names(plugins) == {"crmkit.builtin.sql_storage", "crmkit.builtin.core_events", "house"}


def test_deny_list_from_config_file(tmp_path, crm_factory):
    config = tmp_path / "crmkit.toml"
    config.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "c.db"}"\n\n[plugins]\ndisabled = ["privacy_core", "guest"]\n')

    crm = crm_factory(str(config), plugins=[Recorder("guest")])

    assert "crmkit.builtin.privacy_core" not in names(crm.plugins)
    assert "guest" not in names(crm.plugins)
    assert "crmkit.builtin.sql_storage" in names(crm.plugins)
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    assert "contact" not in crm.privacy.export(contact.id)  # the core's section came from privacy_core


def test_allow_list_from_config_file(tmp_path, crm_factory):
    config = tmp_path / "crmkit.toml"
    config.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "c.db"}"\n\n[plugins]\nenabled = ["core_events"]\n')

    # sql_storage is a plugin like any other: leaving it out leaves no storage backend.
    with pytest.raises(ConfigError, match="no storage backend for 'sqlite'"):
        crm_factory(str(config))


def test_disable_by_environment_variable(monkeypatch, crm_factory):
    monkeypatch.setenv("CRMKIT_DISABLE_PLUGINS", " privacy_core ,crmkit.cli.core_commands,guest")

    crm = crm_factory(plugins=[Recorder("guest"), Recorder("host")])

    assert not {"crmkit.builtin.privacy_core", "crmkit.cli.core_commands", "guest"} & names(crm.plugins)
    assert {"crmkit.builtin.intake_defaults", "host"} <= names(crm.plugins)


def test_disable_list_adds_to_the_environment():
    plugins = make_plugin_manager(disabled=["core_events"], load_entry_points=False, environ={"CRMKIT_DISABLE_PLUGINS": "privacy_core"})
    assert not {"crmkit.builtin.core_events", "crmkit.builtin.privacy_core"} & names(plugins)


# --- hooks that cannot be called are refused ----------------------------------------------


class Misspelled:
    crmkit_plugin_name = "misspelled"

    @hookimpl
    def crmkit_handle_evnt(self, event: Any) -> None:
        pass


class Undecorated:
    crmkit_plugin_name = "undecorated"

    def crmkit_handle_event(self, event: Any) -> None:  # forgot @hookimpl
        pass


class ExtraParameter:
    crmkit_plugin_name = "extra-parameter"

    @hookimpl
    def crmkit_handle_event(self, event: Any, crm: Any, retries: int) -> None:
        pass


def test_misspelled_hook_is_rejected_with_a_suggestion():
    with pytest.raises(PluginError) as excinfo:
        make_plugin_manager(extra_plugins=[Misspelled()], load_entry_points=False, environ=NO_ENV)
    assert excinfo.value.plugin == "misspelled"
    assert "unknown hook 'crmkit_handle_evnt'" in str(excinfo.value)
    assert "did you mean 'crmkit_handle_event'?" in str(excinfo.value)


def test_misspelled_hook_is_rejected_when_opening_a_crm(crm_factory):
    with pytest.raises(PluginError, match="plugin 'misspelled'"):
        crm_factory(plugins=[Misspelled()])


def test_hook_function_without_the_marker_is_rejected():
    with pytest.raises(PluginError) as excinfo:
        make_plugin_manager(extra_plugins=[Undecorated()], load_entry_points=False, environ=NO_ENV)
    assert excinfo.value.plugin == "undecorated"
    assert "without the @crmkit.hookimpl decorator" in str(excinfo.value)


def test_hookimpl_with_a_parameter_the_spec_lacks_is_rejected():
    with pytest.raises(PluginError) as excinfo:
        make_plugin_manager(extra_plugins=[ExtraParameter()], load_entry_points=False, environ=NO_ENV)
    assert excinfo.value.plugin == "extra-parameter"
    assert "retries" in str(excinfo.value)


def test_two_plugins_with_one_name_is_an_error():
    with pytest.raises(PluginError, match="two plugins have this name"):
        make_plugin_manager(extra_plugins=[Recorder("twin"), Recorder("twin")], load_entry_points=False, environ=NO_ENV)


# --- failures inside hooks name the plugin ------------------------------------------------


def _check_licence() -> None:
    raise RuntimeError("licence expired")


class FailsAtStartup:
    crmkit_plugin_name = "licensed"

    @hookimpl
    def crmkit_startup(self) -> None:
        _check_licence()  # the error is raised one frame below the hook implementation


class StartsFine:
    crmkit_plugin_name = "starts-fine"

    def __init__(self) -> None:
        self.started = 0

    @hookimpl
    def crmkit_startup(self, crm: Any) -> None:
        self.started += 1


def test_exception_in_hook_call_names_the_plugin(crm_factory):
    fine = StartsFine()
    with pytest.raises(PluginError) as excinfo:
        crm_factory(plugins=[fine, FailsAtStartup()])
    assert excinfo.value.plugin == "licensed"
    assert "crmkit_startup failed: RuntimeError: licence expired" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, RuntimeError)


def test_call_each_names_the_failing_plugin(crm_factory):
    class Exporter:
        crmkit_plugin_name = "exporter"

        @hookimpl
        def crmkit_export_personal_data(self, contact: Any) -> dict[str, Any]:
            return {"exporter": {"ok": True}}

    class BrokenExporter:
        crmkit_plugin_name = "broken-exporter"

        @hookimpl
        def crmkit_export_personal_data(self, contact: Any) -> dict[str, Any]:
            raise KeyError("no such customer")

    crm = crm_factory(plugins=[Exporter(), BrokenExporter()])
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    with pytest.raises(PluginError) as excinfo:
        crm.privacy.export(contact.id)  # privacy calls each exporter on its own (Plugins.call_each)
    assert excinfo.value.plugin == "broken-exporter"
    assert "KeyError" in str(excinfo.value)


def test_exception_in_registration_hook_names_the_plugin(crm_factory):
    class BadRegistrar:
        crmkit_plugin_name = "bad-registrar"

        @hookimpl
        def crmkit_register_event_types(self, register: Any) -> None:
            register("", "an event without a name")

    with pytest.raises(PluginError, match="plugin 'bad-registrar': event type names must be non-empty strings"):
        crm_factory(plugins=[BadRegistrar()])


# --- registration clashes name both plugins -----------------------------------------------


def registrar(name: str, hook: str, *args: Any) -> object:
    """A plugin that makes one ``register(*args)`` call from ``hook``."""

    def impl(register: Any) -> None:
        register(*args)

    impl.__name__ = hook
    return type(name, (), {"crmkit_plugin_name": name, hook: staticmethod(hookimpl(impl))})()


def assert_names_both(excinfo: pytest.ExceptionInfo[PluginError], first: str, second: str) -> None:
    message = str(excinfo.value)
    assert f"'{first}'" in message and f"'{second}'" in message, message


@attrs.define
class Settings:
    level: int = 1


@pytest.mark.parametrize(
    ("hook", "args"),
    [
        ("crmkit_register_event_types", ("loyalty.earned", "points were earned")),
        ("crmkit_register_settings", ("loyalty", Settings)),
        ("crmkit_register_storage_backends", ("archive", lambda url, **kwargs: None)),
    ],
)
def test_two_plugins_registering_the_same_name(crm_factory, hook, args):
    with pytest.raises(PluginError) as excinfo:
        crm_factory(plugins=[registrar("alpha", hook, *args), registrar("beta", hook, *args)])
    assert_names_both(excinfo, "alpha", "beta")
    assert f"{args[0]!r} is already registered" in str(excinfo.value)


def test_plugin_registering_a_core_event_type_names_the_core_plugin(crm_factory):
    with pytest.raises(PluginError) as excinfo:
        crm_factory(plugins=[registrar("copycat", "crmkit_register_event_types", "deal.won", "mine now")])
    assert_names_both(excinfo, "copycat", "crmkit.builtin.core_events")


def test_plugin_claiming_the_sqlite_scheme_names_the_sql_storage_plugin(crm_factory):
    with pytest.raises(PluginError) as excinfo:
        crm_factory(plugins=[registrar("fastlite", "crmkit_register_storage_backends", "sqlite", lambda url, **kwargs: None)])
    assert_names_both(excinfo, "fastlite", "crmkit.builtin.sql_storage")


def table_plugin(name: str, table: str) -> object:
    class TablePlugin:
        crmkit_plugin_name = name

        @hookimpl
        def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
            register(sa.Table(table, metadata, sa.Column("id", sa.Integer, primary_key=True)))

    return TablePlugin()


def test_two_plugins_defining_the_same_table(crm_factory):
    with pytest.raises(PluginError) as excinfo:
        crm_factory(plugins=[table_plugin("alpha", "loyalty_points"), table_plugin("beta", "loyalty_points")])
    assert_names_both(excinfo, "alpha", "beta")
    assert "table 'loyalty_points' is already defined" in str(excinfo.value)


def test_plugin_redefining_a_core_table(crm_factory):
    with pytest.raises(PluginError, match="plugin 'squatter': table 'contacts' is already defined by the crmkit core"):
        crm_factory(plugins=[table_plugin("squatter", "contacts")])


def test_two_plugins_registering_the_same_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # build_cli reads ./crmkit.toml for the allow/deny lists

    def command_plugin(name: str) -> object:
        return registrar(name, "crmkit_register_commands", click.Command("loyalty", callback=lambda: None))

    with pytest.raises(PluginError) as excinfo:
        build_cli(plugins=[command_plugin("alpha"), command_plugin("beta")])
    assert_names_both(excinfo, "alpha", "beta")
    assert "command 'loyalty' is already registered" in str(excinfo.value)
