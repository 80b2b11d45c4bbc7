"""Test helpers for the HTTP API, for crmkit's tests and plugin authors' alike::

    from crmkit.api.testing import api_client

    def test_my_route(crm):
        with api_client(crm, role="read_only") as client:
            assert client.get("/contacts").status_code == 200
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

    from crmkit.app import CRM


@contextmanager
def api_client(crm: CRM, role: str = "admin", *, scopes: Iterable[str] = (), app: Litestar | None = None,
               **key_options: Any) -> Iterator[TestClient[Any]]:
    """A Litestar ``TestClient`` for ``crm``'s API, authenticated with a new key of ``role``
    (``client.api_key`` is the key's record, ``client.token`` its secret)."""
    from litestar.testing import TestClient

    from crmkit.api import create_app
    from crmkit.api.keys import ApiKeys

    key, token = ApiKeys(crm).create(f"test {role}", role, scopes=scopes, **key_options)
    with TestClient(app or create_app(crm)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        client.api_key, client.token = key, token  # type: ignore[attr-defined]
        yield client
