"""Entities to JSON-safe dicts and back, for the CLI, event payloads and the HTTP API."""

from __future__ import annotations

import enum
import functools
from decimal import Decimal
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter


@functools.cache
def converter() -> cattrs.Converter:
    conv = make_converter()
    # Decimals travel as strings: JSON numbers are floats to most readers and would lose cents.
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook(Decimal, lambda value, _: Decimal(str(value)))
    conv.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda e: e.value)
    return conv


def to_jsonable(entity: Any) -> Any:
    """An attrs entity (or a list of them) as plain JSON-compatible data."""
    return converter().unstructure(entity)
