"""The baseline for ``bench_api``: a bare Litestar app over the same database, no crmkit.

``GET /contacts`` runs one hand-written keyset query (the same page crmkit's list returns:
50 rows in ``(created_at, id)`` order after an optional cursor) and ``POST /contacts`` one
hand-written INSERT of the posted fields, with neither validation, authentication, events nor
audit. It is what the same web stack and database cost with nothing else in the way, so the
ratio of crmkit's figures to these is crmkit's own overhead.

Served with ``uvicorn --factory benchmarks.bare_api:create``; the database URL comes from
``CRMKIT_BENCH_URL`` (a factory, so nothing is built at import time).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from crmkit.storage.sql.backend import normalize_url
from litestar import Litestar, get, post

PAGE = 50
COLUMNS = "id, first_name, last_name, email, phone, lifecycle_stage, owner_id, created_at, updated_at, version"


def create() -> Litestar:
    engine = sa.create_engine(normalize_url(os.environ["CRMKIT_BENCH_URL"]), pool_size=8)
    first_page = sa.text(f"SELECT {COLUMNS} FROM contacts ORDER BY created_at, id LIMIT {PAGE}")
    next_page = sa.text(f"SELECT {COLUMNS} FROM contacts WHERE created_at > :at OR (created_at = :at AND id > :id) "
                        f"ORDER BY created_at, id LIMIT {PAGE}")
    insert = sa.text("INSERT INTO contacts (id, first_name, last_name, email, lifecycle_stage, score, tags, custom, "
                     "created_at, updated_at, version) VALUES (:id, :first_name, :last_name, :email, 'lead', 0, '[]', "
                     "'{}', :now, :now, 1)")

    @get("/hello", sync_to_thread=False)
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    @get("/contacts", sync_to_thread=True)
    def contacts(after_at: str | None = None, after_id: str | None = None) -> dict[str, Any]:
        with engine.connect() as connection:
            if after_at is None:
                rows = connection.execute(first_page).mappings().all()
            else:
                rows = connection.execute(next_page, {"at": after_at, "id": after_id}).mappings().all()
        data = [{key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}
                for row in rows]
        return {"data": data}

    @post("/contacts", sync_to_thread=True)
    def create_contact(data: dict[str, Any]) -> dict[str, Any]:
        body = data
        row = {"id": uuid.uuid4().hex, "first_name": body.get("first_name"), "last_name": body.get("last_name"),
               "email": body.get("email"), "now": datetime.now(UTC).replace(tzinfo=None)}
        with engine.begin() as connection:
            connection.execute(insert, row)
        return {"id": row["id"]}

    return Litestar(route_handlers=[hello, contacts, create_contact], logging_config=None,
                    on_shutdown=[engine.dispose])
