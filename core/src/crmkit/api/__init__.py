"""The headless HTTP API (Litestar): :func:`create_app` builds it for a CRM; ``crmkit serve``
serves it. See ``docs/api.md``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar import Litestar

    from crmkit.app import CRM

__all__ = ["create_app"]


def create_app(crm: CRM, **kwargs: Any) -> Litestar:
    """The Litestar app serving ``crm`` (see :func:`crmkit.api.app.create_app`)."""
    from crmkit.api.app import create_app as build

    return build(crm, **kwargs)
