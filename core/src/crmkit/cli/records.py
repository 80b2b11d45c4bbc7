"""What the record commands (contacts, organizations, deals …) share: options that set fields,
``--set FIELD=VALUE`` for the rest, paging, and the ``show``/``update``/``delete`` commands
built once for every kind of record."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import click

from crmkit.cli import pass_crm
from crmkit.cli.output import KEY_VALUE, Column, emit, json_option, print_json, print_record, print_table, say, yes_option

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class FieldOption:
    """A command-line option for one field of a record (``--first-name`` → ``first_name``):
    it sets the field in add/update commands and filters on it in list commands."""

    flag: str
    field: str
    help: str
    multiple: bool = False
    type: click.ParamType | None = None

    def option(self, fn: F, *, filter_: bool = False) -> F:
        multiple = self.multiple and not filter_
        return click.option(self.flag, self.field, multiple=multiple, default=() if multiple else None, type=self.type,
                            help=self.help)(fn)


def field_options(specs: Sequence[FieldOption], *, custom: bool = True) -> Callable[[F], F]:
    """Add an option per field, ``--set FIELD=VALUE`` and (for records with custom fields)
    ``--custom NAME=VALUE``. Read them back with :func:`record_input`."""

    def decorate(fn: F) -> F:
        fn = click.option("--set", "set_pairs", type=KEY_VALUE, multiple=True, metavar="FIELD=VALUE",
                          help="Set any field; nested ones with dots (address.city=Paris); an empty value clears it.")(fn)
        if custom:
            fn = click.option("--custom", "custom_pairs", type=KEY_VALUE, multiple=True, metavar="NAME=VALUE",
                              help="Set a custom field (see `crmkit custom-fields list`).")(fn)
        for spec in reversed(specs):
            fn = spec.option(fn)
        return fn

    return decorate


def record_input(specs: Sequence[FieldOption], options: dict[str, Any]) -> dict[str, Any]:
    """The fields a command was given, as the mapping services validate. Options that were not
    given are left out (so an update touches only what was named). Consumes them from ``options``."""
    data: dict[str, Any] = {}
    for spec in specs:
        value = options.pop(spec.field, None)
        if spec.multiple:
            value = list(value) if value else None
        if value is not None:
            data[spec.field] = value
    for key, value in options.pop("set_pairs", ()):
        _set_path(data, key, value, "--set")
    for key, value in options.pop("custom_pairs", ()):
        _set_path(data, f"custom.{key}", value, "--custom")
    return data


def _set_path(data: dict[str, Any], dotted: str, value: str, option: str) -> None:
    *parents, leaf = dotted.split(".")
    target = data
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise click.BadParameter(f"{dotted!r} sets a field inside {part!r}, which was given a plain value", param_hint=option)
    target[leaf] = value


def paging_options(fn: F) -> F:
    fn = click.option("--after", metavar="ID", default=None, help="Start after this record: the last id of the previous page.")(fn)
    fn = click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many records.")(fn)
    return fn


def page(service: Any, limit: int, after: str | None, **equals: Any) -> list[Any]:
    """One page of ``service.list`` (ordered by creation time, then id), continuing after the
    record ``after``; filters that were not given (None) are left out."""
    cursor = None
    if after:
        anchor = service.get(after)
        cursor = (anchor.created_at, anchor.id)
    return service.list(limit=limit, after=cursor, **{k: v for k, v in equals.items() if v is not None})


def print_page(title: str, rows: Sequence[Any], columns: Sequence[Column], limit: int) -> None:
    print_table(title, rows, columns)
    if len(rows) == limit:
        say(f"More may follow: add --after {rows[-1].id}", style="dim")


def report(as_json: bool, entity: Any, message: str) -> None:
    """After a write: the record as JSON, or one line for a person."""
    if as_json:
        print_json(entity)
    else:
        say(message)


def add_create_command(
    group: click.Group,
    *,
    service: str,
    fields: Sequence[FieldOption],
    summary: Callable[[Any], str],
    help: str,
    name: str = "add",
    method: str = "create",
    custom: bool = False,
) -> None:
    """``add`` (or ``name``): build the record from field options and hand it to
    ``crm.<service>.<method>``, which validates it."""

    @group.command(name, help=help)
    @field_options(fields, custom=custom)
    @json_option
    @pass_crm
    def add(crm: Any, as_json: bool, **options: Any) -> None:
        entity = getattr(getattr(crm, service), method)(record_input(fields, options))
        report(as_json, entity, summary(entity))


def add_list_command(
    group: click.Group,
    *,
    title: str,
    service: str,
    columns: Sequence[Column],
    filters: Sequence[FieldOption] = (),
) -> None:
    """``list``: one page of ``crm.<service>.list``, filtered on equality by ``filters``."""

    def command(crm: Any, limit: int, after: str | None, as_json: bool, **equals: Any) -> None:
        rows = page(getattr(crm, service), limit, after, **equals)
        emit(as_json, rows, lambda: print_page(title, rows, columns, limit))

    for spec in reversed(filters):
        command = spec.option(command, filter_=True)
    group.command("list", help=f"List {title.lower()}, oldest first.")(paging_options(json_option(pass_crm(command))))


def add_record_commands(
    group: click.Group,
    *,
    kind: str,
    service: str,
    fields: Sequence[FieldOption],
    custom: bool = True,
    lookup: Callable[[Any, str], Any] | None = None,
    describe: Callable[[Any, Any], Mapping[str, Any]] | None = None,
) -> None:
    """Add ``show``, ``update`` and ``delete`` for one kind of record to ``group``.

    :param service: the ``crm`` attribute holding the record's service (``contacts`` …).
    :param lookup: ``lookup(crm, reference)`` → record, for kinds that accept more than an id.
    :param describe: extra lines for the human view (e.g. a deal's stage name).
    """

    def find(crm: Any, reference: str) -> Any:
        return lookup(crm, reference) if lookup else getattr(crm, service).get(reference)

    def show_record(crm: Any, entity: Any) -> None:
        print_record(f"{kind.capitalize()} {entity.id}", entity, describe(crm, entity) if describe else None)

    @group.command("show", help=f"Show one {kind}.")
    @click.argument("reference", metavar="ID")
    @json_option
    @pass_crm
    def show(crm: Any, reference: str, as_json: bool) -> None:
        entity = find(crm, reference)
        emit(as_json, entity, lambda: show_record(crm, entity))

    @group.command("update", help=f"Change fields of a {kind}; fields not named are left as they are.")
    @click.argument("reference", metavar="ID")
    @field_options(fields, custom=custom)
    @click.option("--expected-version", type=int, default=None, metavar="N",
                  help="Refuse the change if the record is no longer at version N (someone else changed it).")
    @json_option
    @pass_crm
    def update(crm: Any, reference: str, expected_version: int | None, as_json: bool, **options: Any) -> None:
        changes = record_input(fields, options)
        if not changes:
            raise click.UsageError("nothing to change: give field options or --set FIELD=VALUE")
        entity = getattr(crm, service).update(find(crm, reference).id, changes, expected_version=expected_version)
        report(as_json, entity, f"Updated {kind} {entity.id} (version {entity.version})")

    @group.command("delete", help=f"Delete a {kind} (asks first unless --yes).")
    @click.argument("reference", metavar="ID")
    @click.option("--expected-version", type=int, default=None, metavar="N", help="Refuse if the record is no longer at version N.")
    @yes_option
    @json_option
    @pass_crm
    def delete(crm: Any, reference: str, expected_version: int | None, yes: bool, as_json: bool) -> None:
        entity = find(crm, reference)
        if not yes:
            click.confirm(f"Delete {kind} {entity.id}?", abort=True)
        getattr(crm, service).delete(entity.id, expected_version=expected_version)
        report(as_json, {"deleted": entity.id, "kind": kind}, f"Deleted {kind} {entity.id}")
