"""The plugin manager factory and the registries that ``register`` callables feed.

One :func:`make_plugin_manager` call builds a fresh :class:`pluggy.PluginManager` per CRM — no
manager exists at import time — from the built-in plugins, the ``crmkit`` entry points and any
plugin objects handed in, filtered by the configuration's allow/deny lists and
``CRMKIT_DISABLE_PLUGINS``. ``check_pending()`` makes a misspelled hook fail loudly, naming the
plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import attrs
import pluggy

from crmkit import hookspecs
from crmkit.errors import PluginError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "crmkit"
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

#: Built-in plugins, registered like any other (and disable-able the same way). Order matters
#: only for documentation: crmkit never relies on registration order between plugins.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "crmkit.builtin.core_events",
    "crmkit.builtin.sql_storage",
    "crmkit.builtin.intake_defaults",
    "crmkit.builtin.privacy_core",
    "crmkit.builtin.audit",
    "crmkit.builtin.webhooks",
    "crmkit.builtin.scoring_plugin",
    "crmkit.builtin.automation_plugin",
    "crmkit.builtin.sequences_plugin",
    "crmkit.builtin.segments_plugin",
    "crmkit.builtin.channels_plugin",
    "crmkit.cli.core_commands",
    "crmkit.merge.plugin",
    "crmkit.cli.dedupe_commands",
    "crmkit.cli.transfer_commands",
    "crmkit.builtin.core_metrics",
    "crmkit.cli.metrics_commands",
    "crmkit.cli.report_commands",
    "crmkit.cli.serve_commands",
    "crmkit.cli.worker_commands",
    "crmkit.cli.messages_commands",
)

T = TypeVar("T")


@attrs.define
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    builtin: bool


class Plugins:
    """A typed facade over one CRM's :class:`pluggy.PluginManager`."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, tuple[str | None, str | None, bool]]):
        self.pm = pm
        self.hook = pm.hook
        self._origins = origins

    def info(self) -> list[PluginInfo]:
        result = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            dist, version, builtin = self._origins.get(name, (None, None, False))
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            result.append(PluginInfo(name, dist, version, hooks, builtin))
        return result

    def impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """The implementations of ``hook_name`` in the order pluggy would call them."""
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    def call_each(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call every implementation on its own, yielding ``(plugin_name, result)``.

        Used where one plugin's failure must be isolated from the others (event subscribers) or
        where the caller must know which plugin produced which result (registration). An
        exception escapes as :class:`PluginError` naming the plugin.
        """
        for impl in self.impls(hook_name):
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                yield impl.plugin_name, impl.function(**args)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(impl.plugin_name, f"{hook_name} failed: {type(exc).__name__}: {exc}") from exc

    def call_each_safely(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation on its own; log (naming the plugin) and skip failures.

        For after-the-fact reactions where one plugin's bug must not affect anything else.
        """
        results = []
        for impl in self.impls(hook_name):
            try:
                results.append((impl.plugin_name, impl.function(**{name: kwargs[name] for name in impl.argnames})))
            except Exception:
                log.exception("plugin %r: %s failed", impl.plugin_name, hook_name)
        return results

    def call(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a hook the pluggy way; an exception names the plugin it came from."""
        caller = getattr(self.pm.hook, hook_name)
        try:
            return caller(**kwargs)
        except PluginError:
            raise
        except Exception as exc:
            plugin = self.blame(hook_name, exc)
            if plugin is None:
                raise
            raise PluginError(plugin, f"{hook_name} failed: {type(exc).__name__}: {exc}") from exc

    def blame(self, hook_name: str, exc: BaseException) -> str | None:
        """Find which implementation of ``hook_name`` raised ``exc`` by walking its traceback."""
        codes = {impl.function.__code__: impl.plugin_name for impl in self.impls(hook_name) if hasattr(impl.function, "__code__")}
        tb = exc.__traceback__
        culprit = None
        while tb is not None:
            culprit = codes.get(tb.tb_frame.f_code, culprit)
            tb = tb.tb_next
        return culprit

    def collect(self, hook_name: str, registry: Registry[T], **kwargs: Any) -> Registry[T]:
        """Run a registration hook, giving each plugin a ``register`` bound to its own name."""
        for impl in self.impls(hook_name):
            def register(name_or_value: Any, value: Any = _MISSING, *, _plugin: str = impl.plugin_name) -> None:
                registry.add(name_or_value, value, plugin=_plugin)

            args = {**kwargs, "register": register}
            try:
                impl.function(**{name: args[name] for name in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(impl.plugin_name, f"{hook_name} failed: {type(exc).__name__}: {exc}") from exc
        return registry


_MISSING: Any = object()


class Registry(Generic[T]):
    """Named things registered by plugins, remembering which plugin registered each.

    Two plugins registering the same name is an error naming both; a plugin that wants to
    replace another's entry must say so by disabling the other plugin.
    """

    def __init__(self, kind: str, key: Callable[[Any], str] | None = None):
        self.kind = kind
        self._key = key
        self._items: dict[str, T] = {}
        self.owners: dict[str, str] = {}

    def add(self, name_or_value: Any, value: Any = _MISSING, *, plugin: str) -> None:
        if value is _MISSING:
            if self._key is None:
                raise PluginError(plugin, f"register() for {self.kind} takes a name and a value")
            name, value = self._key(name_or_value), name_or_value
        else:
            name = name_or_value
        if not isinstance(name, str) or not name:
            raise PluginError(plugin, f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items:
            raise PluginError(plugin, f"{self.kind} {name!r} is already registered by plugin {self.owners[name]!r}")
        self._items[name] = value
        self.owners[name] = plugin

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"no {self.kind} named {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterable[tuple[str, T]]:
        return self._items.items()

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items.get(name, default)


def _parse_list(value: str | None) -> set[str]:
    return {item.strip() for item in (value or "").split(",") if item.strip()}


def make_plugin_manager(
    *,
    enabled: Iterable[str] | None = None,
    disabled: Iterable[str] = (),
    extra_plugins: Iterable[object] = (),
    load_entry_points: bool = True,
    environ: dict[str, str] | None = None,
) -> Plugins:
    """Build a fresh plugin manager.

    :param enabled: if given, only these plugin names are loaded (built-ins included, by their
        module name or short name such as ``sql_storage``).
    :param disabled: plugin names never loaded; ``CRMKIT_DISABLE_PLUGINS`` (comma-separated)
        adds to them.
    :param extra_plugins: plugin objects (modules, classes, instances) registered directly —
        how tests and embedding applications add a plugin without an entry point.
    """
    env = os.environ if environ is None else environ
    deny = set(disabled) | _parse_list(env.get("CRMKIT_DISABLE_PLUGINS"))
    allow = set(enabled) if enabled is not None else None

    def wanted(name: str) -> bool:
        short = name.rsplit(".", 1)[-1]
        if name in deny or short in deny:
            return False
        return allow is None or name in allow or short in allow

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    origins: dict[str, tuple[str | None, str | None, bool]] = {}

    def register(plugin: object, name: str, origin: tuple[str | None, str | None, bool]) -> None:
        if pm.has_plugin(name):
            first, second = (o[0] or "passed to crmkit.open" for o in (origins[name], origin))
            raise PluginError(name, f"two plugins have this name (from {first!r} and {second!r}); rename or disable one")
        origins[name] = origin
        try:
            pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(name, f"could not be registered: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(name, f"is invalid: {exc}") from exc

    for module_name in BUILTIN_PLUGINS:
        if wanted(module_name):
            register(importlib.import_module(module_name), module_name, ("crmkit", _version("crmkit"), True))

    if load_entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            if not wanted(ep.name) or (pm.has_plugin(ep.name) and origins[ep.name][0] == dist):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(ep.name, f"entry point {ep.value!r} failed to load: {type(exc).__name__}: {exc}") from exc
            register(plugin, ep.name, (dist, ep.dist.version if ep.dist else None, False))

    for plugin in extra_plugins:
        name = _plugin_name(plugin)
        # An installed plugin handed in again (a plugin's own tests under `pip install -e`) is
        # already registered through its entry point: once is enough.
        if wanted(name) and not pm.is_registered(plugin):
            register(plugin, name, (None, None, False))

    _check_pending(pm)
    return Plugins(pm, origins)


def _check_pending(pm: pluggy.PluginManager) -> None:
    """Like ``pm.check_pending()`` but the error names the plugin and the hook."""
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for attr in dir(plugin):
            if not attr.startswith("crmkit_") or not callable(getattr(plugin, attr, None)):
                continue
            caller = getattr(pm.hook, attr, None)
            if caller is None or not caller.has_spec():
                suggestion = _closest(attr, [n for n in dir(hookspecs) if n.startswith("crmkit_")])
                hint = f"; did you mean {suggestion!r}?" if suggestion else ""
                raise PluginError(name, f"implements unknown hook {attr!r}{hint}")
            if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
                # pluggy ignores functions without the marker: say so instead of never calling it.
                raise PluginError(name, f"defines {attr!r} without the @crmkit.hookimpl decorator, so it would never be called")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(getattr(exc, "plugin", "?") and pm.get_name(exc.plugin) or "?", str(exc)) from exc


def _closest(name: str, candidates: list[str]) -> str | None:
    from rapidfuzz import process

    match = process.extractOne(name, candidates, score_cutoff=80)
    return match[0] if match else None


def _plugin_name(plugin: object) -> str:
    explicit = getattr(plugin, "crmkit_plugin_name", None) or getattr(plugin, "__crmkit_name__", None)
    if explicit:
        return str(explicit)
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    if isinstance(plugin, type):
        return plugin.__name__
    return type(plugin).__name__


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None

