"""Errors crmkit raises, shared by the domain, the services, the CLI and the HTTP API.

Validation problems are *data*: every rejected input carries a list of :class:`FieldIssue`
(field, code, message) so a caller can show all of them at once and nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


@attrs.frozen
class FieldIssue:
    """One problem with one input field.

    :param field: dotted path of the field, e.g. ``email`` or ``custom.budget``.
    :param code: stable machine-readable code, e.g. ``invalid_email``, ``required``.
    :param message: a sentence a person can act on.
    """

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class CRMError(Exception):
    """Base class of every error crmkit raises on purpose."""


class ValidationFailed(CRMError):
    """Input was rejected; ``issues`` says which fields and why. Nothing was written."""

    def __init__(self, issues: Iterable[FieldIssue]):
        self.issues: list[FieldIssue] = list(issues)
        super().__init__("; ".join(f"{i.field}: {i.message}" for i in self.issues) or "invalid input")

    @classmethod
    def single(cls, field: str, code: str, message: str) -> ValidationFailed:
        return cls([FieldIssue(field, code, message)])


class NotFound(CRMError):
    """A record that was asked for does not exist."""

    def __init__(self, kind: str, ident: object):
        self.kind, self.ident = kind, ident
        super().__init__(f"{kind} {ident!r} not found")


class ConflictError(CRMError):
    """A write lost a race: the record changed since the caller read it (optimistic concurrency)."""

    def __init__(self, kind: str, ident: object, expected_version: int | None = None):
        self.kind, self.ident, self.expected_version = kind, ident, expected_version
        extra = f" (expected version {expected_version})" if expected_version is not None else ""
        super().__init__(f"{kind} {ident!r} was changed by someone else{extra}; reload and retry")


class PluginError(CRMError):
    """A plugin misbehaved or could not be loaded. The message always names the plugin."""

    def __init__(self, plugin: str, message: str):
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


class ConfigError(CRMError):
    """The configuration is invalid; the message names the file, section and key."""
