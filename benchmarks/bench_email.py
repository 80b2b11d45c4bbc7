"""Sending e-mail: the full dispatch path against a bare smtplib loop, to the same local SMTP sink.

N messages (2,000; 300 with ``--quick``) to N contacts with granted consent are queued with
``dispatch_inline=False`` (not timed). Then, interleaved, best of 2:

- **crm.messages.drain()** — what ``crmkit worker`` does per message: claim a batch with a lease,
  read the message and its contact, run the veto chain again (consent, suppression list,
  frequency cap, plugin vetoes, quiet hours), build the MIME message (multipart text + HTML,
  Message-ID, List-Unsubscribe with a signed token), take a token from the domain throttle,
  send over the SMTP connection reused across the batch, and commit "sent" with its activity
  and outbox event;
- **baseline**: one ``smtplib.SMTP`` connection and a loop building the same multipart message
  with the standard library's cheapest API (``MIMEMultipart`` + ``MIMEText``, the text part
  written beforehand) and ``send_message``.

Both go to an aiosmtpd sink on 127.0.0.1 in this process (it costs both paths alike); the sink
must have received every message of each path before a ratio is reported. Figures are ms per
message (ratio above 1: the dispatch path costs that many times more); notes give messages per
second.
"""

from __future__ import annotations

import smtplib
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

try:  # run as `python -m benchmarks` (package) or directly
    from benchmarks.harness import backend_label, result, scratch_database
except ImportError:  # pragma: no cover
    from harness import backend_label, result, scratch_database  # type: ignore[no-redef]

FULL = 2_000
QUICK = 300
BODY = "<h1>Hello {{ contact.first_name }}</h1><p>This month: <b>20% off</b> everything. <a href=\"https://shop.example/sale\">Shop now</a></p>"


def _config(directory: Path, url: str, port: int) -> Path:
    import tomli_w

    path = directory / "crmkit.toml"
    path.write_text(tomli_w.dumps({
        "crmkit": {"database": url},
        "plugins": {"email": {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "news@shop.example",
                              "public_url": "https://crm.shop.example", "unsubscribe_secret": "bench-secret-0123456789"}},
    }))
    return path


def _queue(crm: Any, contacts: list[str], round_: int) -> list[dict[str, Any]]:
    return [crm.messages.send(contact_id, "email", subject="This month", body=BODY, purpose="newsletter",
                              idempotency_key=f"bench-{round_}-{contact_id}") for contact_id in contacts]


def _baseline(port: int, messages: list[dict[str, Any]]) -> None:
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for m in messages:
            msg = MIMEMultipart("alternative")
            msg["From"], msg["To"], msg["Subject"] = "news@shop.example", m["address"], m["subject"]
            msg["Message-ID"] = f"<baseline-{m['id']}@shop.example>"
            msg.attach(MIMEText("Hello\n\nThis month: 20% off everything.\n", "plain", "us-ascii"))
            msg.attach(MIMEText(m["body"], "html", "us-ascii"))
            conn.send_message(msg)


def run(quick: bool, *, database: str | None = None) -> list[dict[str, Any]]:
    import tempfile

    import crmkit
    from crmkit_email.channel import EmailChannel
    from crmkit_email.testing import SmtpSink

    count, rounds = (QUICK, 2) if quick else (FULL, 2)
    best_drain = best_base = float("inf")
    connections = 0
    with scratch_database(database) as url, tempfile.TemporaryDirectory(prefix="crmkit-bench-email-") as directory, SmtpSink() as sink:
        config = _config(Path(directory), url, sink.port)
        with crmkit.open(config, migrate=True, dispatch_inline=False) as crm:
            records = [crm.intake.record({"first_name": f"Reader{i}", "email": f"reader{i}@example{i % 50}.org"}, source="import")
                       for i in range(count)]
            contacts = [r.contact_id for r in crm.intake.submit_many(records)]
            with crm.uow() as uow:
                for contact_id in contacts:
                    crm.consents.record_in(uow, {"contact_id": contact_id, "channel": "email", "purpose": "newsletter", "status": "granted"})
            channel = EmailChannel.for_crm(crm)
            for round_ in range(rounds):
                queued = _queue(crm, contacts, round_)
                before = len(sink.deliveries)
                began = time.perf_counter()
                report = crm.messages.drain()
                best_drain = min(best_drain, time.perf_counter() - began)
                channel.close()
                connections = channel.sender.connections_opened if channel.sender else 0
                if report.sent != count or len(sink.deliveries) - before != count:
                    raise SystemExit(f"bench_email: the dispatch path sent {report.sent} of {count} ({report})")

                before = len(sink.deliveries)
                began = time.perf_counter()
                _baseline(sink.port, queued)
                best_base = min(best_base, time.perf_counter() - began)
                if len(sink.deliveries) - before != count:
                    raise SystemExit("bench_email: the baseline lost messages")
            crm.events.drain()  # leave nothing behind in the scratch database

    per_drain, per_base = best_drain * 1000 / count, best_base * 1000 / count
    return [result(
        f"crm.messages.drain to a local SMTP sink, {count:,} messages ({backend_label(database)})",
        per_drain, per_base, "ms/message",
        f"{count / best_drain:,.0f} vs {count / best_base:,.0f} messages/s (bare smtplib loop, one connection); "
        f"{connections} SMTP connection(s) over {rounds} round(s)",
    )]
