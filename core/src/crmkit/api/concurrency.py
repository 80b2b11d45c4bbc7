"""ETags from the version column, and ``If-Match`` preconditions on writes.

A record's ETag is its version (``"3"``). A write sent with ``If-Match`` is refused with 412 when
the record is no longer at that version — the client read something stale. The version is then
handed to the service, whose ``UPDATE … WHERE version = ?`` turns a change made between that
check and the write (a lost update) into a 409 :class:`~crmkit.errors.ConflictError`.
"""

from __future__ import annotations

import re
from typing import Any

from crmkit.api.errors import ApiError, bad_request

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag(entity: Any) -> str | None:
    """The entity's ETag, or None for records that have no version (they are never edited)."""
    version = getattr(entity, "version", None)
    return None if version is None else f'"{version}"'


def etag_headers(entity: Any) -> dict[str, str]:
    tag = etag(entity)
    return {"ETag": tag} if tag else {}


def parse_if_match(header: str) -> list[str] | None:
    """The entity tags of an ``If-Match`` header; None for ``*`` (any version)."""
    if header.strip() == "*":
        return None
    tags, position = [], 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None:
            raise bad_request("If-Match", "invalid_header", 'must be "*" or a list of ETags such as "3"')
        # A weak tag never matches under If-Match's strong comparison (RFC 9110 §13.1.1).
        if not match[1]:
            tags.append(f'"{match[2]}"')
        position = match.end()
        if position < len(header):
            if header[position] != ",":
                raise bad_request("If-Match", "invalid_header", 'must be "*" or a list of ETags such as "3"')
            position += 1
    if not tags and "W/" not in header:
        raise bad_request("If-Match", "invalid_header", 'must be "*" or a list of ETags such as "3"')
    return tags


def expected_version(headers: Any, entity: Any) -> int | None:
    """Check the request's ``If-Match`` against ``entity`` (as just read).

    :return: the version the write must still find (pass it to the service), or None when the
        request sent no ``If-Match``.
    :raises ApiError: 412 when the record changed since the client's ETag.
    """
    header = headers.get("if-match")
    if header is None:
        return None
    tags = parse_if_match(header)
    current = etag(entity)
    if tags is None:
        return getattr(entity, "version", None)
    if current is None or current not in tags:
        raise ApiError(412, "precondition_failed",
                       f"the record is at ETag {current or 'none'}, not {', '.join(tags) or 'a strong ETag'}; read it again and retry")
    return getattr(entity, "version", None)
