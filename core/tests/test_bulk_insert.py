"""The bulk-write fast paths store exactly what the ordinary paths store: ``insert_rows``
(pre-processed executemany, COPY on PostgreSQL) against ``sa.insert`` on every backend, and
``ContactRows`` against building a ``Contact`` and serialising it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from crmkit.builtin.contact_rows import ContactRows
from crmkit.domain import Contact
from crmkit.domain.values import Address, Attribution, LifecycleStage, new_id
from crmkit.serialize import to_jsonable
from crmkit.storage.sql.mapping import to_row
from crmkit.storage.sql.repository import insert_rows


def _contact_rows(count: int) -> list[dict]:
    base = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    rows = []
    for i in range(count):
        contact = Contact(
            first_name=f"Zoë\t{i}\n", last_name=None if i % 3 else "O'Brien \"Q\"", email=f"p{i}@example.com",
            phone="+14155550001" if i % 2 else None, address=Address(city="Zürich", postcode=f"80{i:02d}"),
            birth_date=date(1990, 1, 1) + timedelta(days=i) if i % 4 else None, lifecycle_stage=LifecycleStage.CUSTOMER,
            source=Attribution(channel="import"), score=1.5 * i, tags=["vip", "tab\tand\nnewline", "back\\slash"],
            custom={"nested": {"a": [1, 2.5, None, True]}, "text": "ü"}, created_at=base + timedelta(microseconds=i),
            updated_at=base, version=1 + i)
        rows.append(to_row(contact))
    return rows


def _stored(connection: sa.Connection, table: sa.Table) -> list[tuple]:
    return [tuple(r) for r in connection.execute(sa.select(table).order_by(table.c.id))]


def test_insert_rows_stores_what_sa_insert_stores(any_crm):
    """Contacts (JSON, dates, datetimes, floats, NULLs, quotes and control characters) and
    outbox events (an autoincrement key left to the database) on SQLite, PostgreSQL (COPY) and
    MariaDB: rows written by ``insert_rows`` read back equal to rows written by ``sa.insert``."""
    tables = any_crm.backend.metadata.tables
    contacts, outbox = tables["contacts"], tables["outbox_events"]
    rows = _contact_rows(12)
    twins = [{**row, "id": new_id(), "email": "twin-" + row["email"]} for row in rows]
    events = [{"id": new_id(), "type": "contact.created", "subject_id": r["id"], "data": {"k": [i, "ü"]}, "actor": None,
               "occurred_at": r["created_at"]} for i, r in enumerate(rows)]
    with any_crm.backend.engine.begin() as connection:
        assert insert_rows(connection, contacts, rows) == 12
        connection.execute(sa.insert(contacts), twins)
        assert insert_rows(connection, outbox, events) == 12
        assert insert_rows(connection, contacts, []) == 0
    with any_crm.backend.engine.connect() as connection:
        stored = {r.email: r._mapping for r in connection.execute(sa.select(contacts))}
        for row in rows:
            fast, slow = dict(stored[row["email"]]), dict(stored["twin-" + row["email"]])
            assert fast.pop("id") == row["id"]
            slow.pop("id")
            slow["email"] = row["email"]
            assert fast == slow
            assert fast["created_at"] == row["created_at"] and fast["tags"] == row["tags"] and fast["custom"] == row["custom"]
        seqs = [r.seq for r in connection.execute(sa.select(outbox.c.seq).order_by(outbox.c.seq))]
        assert len(seqs) == 12 and len(set(seqs)) == 12  # the database numbered them
        data = [r.data for r in connection.execute(sa.select(outbox.c.data).order_by(outbox.c.seq))]
        assert data == [e["data"] for e in events]


def test_insert_rows_leaves_python_defaults_to_sqlalchemy():
    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("kind", sa.String(8), default="plain"))
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        insert_rows(connection, table, [{"id": 1}, {"id": 2}])
        insert_rows(connection, table, [{"id": 3, "kind": "given"}])
        assert [tuple(r) for r in connection.execute(sa.select(table).order_by(table.c.id))] == [(1, "plain"), (2, "plain"), (3, "given")]
        with pytest.raises(sa.exc.CompileError, match="nope"):
            insert_rows(connection, table, [{"id": 4, "nope": 1}])


@pytest.mark.parametrize("clean", [
    {},
    {"first_name": "Ada", "email": "ada@example.com", "tags": ["a", "b"], "custom": {"x": 1}},
    {"first_name": None, "address": Address(city="Paris", country="FR"), "source": Attribution(channel="ads", utm_source="g"),
     "lifecycle_stage": LifecycleStage.MQL, "birth_date": date(2000, 2, 29), "score": 3.0, "phone": "+14155550001"},
])
def test_contact_rows_match_the_entity_path(clean):
    rows = ContactRows()
    now = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    row = rows.row(clean, now)
    contact = Contact(id=row["id"], created_at=now, updated_at=now, **{k: v for k, v in clean.items() if v is not None})
    assert row == to_row(contact)
    assert list(row) == list(to_row(contact))
    assert rows.payload(row) == to_jsonable(contact)
    other = rows.row(clean, now)
    assert other["id"] != row["id"]
    other["tags"].append("mutated")  # defaults are fresh per row, never shared
    assert "mutated" not in rows.row({}, now)["tags"]
