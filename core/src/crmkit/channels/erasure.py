"""What erasing a person does to the channel layer's tables, and the opt-outs that outlive it.

Messages (rendered bodies, addresses) are deleted. Suppression entries are different: a hard
bounce, a complaint, an unsubscribe or a STOP must go on being honoured after the person is
erased (keeping that much is what lets a sender respect the objection). So their address is
replaced by a digest (:func:`digest`) and the entry loses its link to the contact and its
detail. The plain address is gone from the database; a send to the same address later is
still recognised — by hashing it the same way — and vetoed (:func:`erased_opt_outs`), until
the person gives consent again for that channel.

A digest is pseudonymous, not anonymous: whoever already knows an address can confirm it was
suppressed. That is the point of a suppression list, and all it keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from crmkit.domain.values import utcnow

if TYPE_CHECKING:
    from crmkit.domain import Contact

PREFIX = "erased:sha256:"


def digest(channel: str, address: str) -> str:
    """The stored form of an erased person's suppressed address (case and spaces ignored)."""
    return PREFIX + hashlib.sha256(f"{channel}\n{address.strip().lower()}".encode()).hexdigest()


def erase_suppressions(conn: sa.Connection, suppressions: sa.Table, contact: Contact) -> None:
    """Hash the address of every entry linked to the person or holding their e-mail address
    or phone number, and drop the link and detail; ``created_at`` becomes the erasure's time
    (a consent given after it lifts the opt-out)."""
    s = suppressions
    addresses = [value for value in (contact.email, contact.phone) if value]
    about = sa.or_(s.c.contact_id == contact.id, s.c.address.in_(addresses)) if addresses else s.c.contact_id == contact.id
    now = utcnow()
    for row in conn.execute(sa.select(s.c.id, s.c.channel, s.c.address, s.c.reason).where(about, s.c.address.not_like(f"{PREFIX}%"))).all():
        hashed = digest(row.channel, row.address)
        clash = sa.and_(s.c.channel == row.channel, s.c.address == hashed, s.c.reason == row.reason)
        if conn.execute(sa.select(s.c.id).where(clash)).first() is not None:  # suppressed and erased before
            conn.execute(sa.delete(s).where(s.c.id == row.id))
            continue
        conn.execute(sa.update(s).where(s.c.id == row.id).values(address=hashed, contact_id=None, detail={}, created_at=now))


def erased_opt_outs(conn: sa.Connection, suppressions: sa.Table, consents: sa.Table, *, channel: str, address: str,
                    contact_id: str, ignore: Iterable[str] = ()) -> list[str]:
    """The reasons an erased person's opt-outs still apply to sending ``address`` on
    ``channel``: those recorded (erased) after the recipient's last consent grant for the
    channel. ``ignore``: reasons that do not apply to this message (unsubscribes, for a
    transactional one)."""
    s, c = suppressions, consents
    rows = conn.execute(sa.select(s.c.reason, s.c.created_at).where(s.c.channel == channel, s.c.address == digest(channel, address))).all()
    if not rows:
        return []
    granted: datetime | None = conn.execute(
        sa.select(sa.func.max(c.c.recorded_at)).where(c.c.contact_id == contact_id, c.c.channel == channel, c.c.status == "granted")
    ).scalar_one()
    skipped = set(ignore)
    return sorted({row.reason for row in rows if row.reason not in skipped and (granted is None or granted < row.created_at)})
