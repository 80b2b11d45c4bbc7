"""``crmkit email``: the inbound listener, IMAP polling, one-shot receiving (for an MTA's pipe)
and a check of the SMTP settings."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, say


def email_group() -> click.Group:
    @click.group("email")
    def email_() -> None:
        """The e-mail channel: inbound mail, bounces, SMTP check."""

    @email_.command("listen")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
    @click.option("--port", type=click.IntRange(1, 65535), default=2525, show_default=True, help="TCP port.")
    @pass_crm
    def listen(crm: Any, host: str, port: int) -> None:
        """Receive mail over SMTP until SIGTERM/SIGINT: replies and enquiries become activities
        (unknown senders become leads), bounces and complaints become receipts."""
        from crmkit_email.inbound import listener

        server = listener(crm, host, port)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        server.start()
        try:
            say(f"crmkit email listener on {host}:{port}")
            stop.wait()
        finally:
            server.stop()
            for sig, before in previous.items():
                signal.signal(sig, before)

    @email_.command("receive")
    @click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
    @click.option("--recipient", "recipients", multiple=True, help="Envelope recipient (an MTA passes it as ${recipient}).")
    @json_option
    @pass_crm
    def receive_(crm: Any, source: Path | None, recipients: tuple[str, ...], as_json: bool) -> None:
        """Handle one message from FILE or standard input (a pipe from Postfix, Exim …)."""
        from crmkit_email.inbound import receive

        raw = source.read_bytes() if source else sys.stdin.buffer.read()
        if not raw.strip():
            raise click.UsageError("no message given (a file or standard input)")
        outcome = receive(crm, raw, recipients)
        data = {"outcome": outcome.kind, "contact_id": outcome.contact_id, "activity_id": outcome.activity_id,
                "receipts": outcome.receipts, "detail": outcome.detail}
        emit(as_json, data, lambda: say(f"{outcome.kind}" + (f": {outcome.detail}" if outcome.detail else "")
                                        + (f" (contact {outcome.contact_id})" if outcome.contact_id else "")))

    @email_.command("poll")
    @click.option("--once", is_flag=True, help="Poll once and exit (default: every imap_poll_seconds until SIGTERM/SIGINT).")
    @json_option
    @pass_crm
    def poll_(crm: Any, once: bool, as_json: bool) -> None:
        """Fetch new mail from the IMAP mailbox in [plugins.email] and handle it like the
        listener does. Messages are tracked by UID, so a repeated or interrupted poll handles
        nothing twice."""
        from crmkit_email.channel import EmailChannel
        from crmkit_email.imap import ImapError, poll

        settings = EmailChannel.for_crm(crm).settings
        stop = threading.Event()
        previous = {} if once else {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                try:
                    report = poll(crm)
                except ImapError as exc:
                    if once:
                        raise click.ClickException(str(exc)) from None
                    click.echo(f"Error: {exc}", err=True)
                else:
                    data = {"account": report.account, "fetched": report.fetched, "outcomes": report.counts(),
                            "last_uid": report.last_uid, "skipped": report.skipped}
                    emit(as_json, data, lambda r=report: say(
                        f"{r.account}: " + (r.skipped or f"{r.fetched} message(s)" + "".join(f", {n} {k}" for k, n in sorted(r.counts().items())))))
                if once or stop.wait(settings.imap_poll_seconds):
                    return
        finally:
            for sig, before in previous.items():
                signal.signal(sig, before)

    @email_.command("check")
    @pass_crm
    def check(crm: Any) -> None:
        """Connect to the SMTP server with the configured security and credentials."""
        from crmkit_email.channel import EmailChannel
        from crmkit_email.smtp import SmtpSender

        settings = EmailChannel.for_crm(crm).settings
        error = SmtpSender(settings).check()
        if error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)
        say(f"SMTP {settings.host}:{settings.port} ({settings.security}"
            f"{', as ' + settings.username if settings.username else ''}): OK")

    return email_
