"""Local HTTP servers that speak the providers' wire formats, for tests and benchmarks.

:class:`TwilioServer` serves Twilio's ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
as documented: HTTP basic auth with the account SID and auth token (401, error 20003,
otherwise), a form-encoded body with ``To``, ``Body`` and ``From`` or ``MessagingServiceSid``
(400 with 21604 / 21602 / 21603 when one is missing), ``To`` in E.164 (21211), bodies up to
1,600 characters (21617), Twilio's magic test numbers (+15005550001 invalid → 21211,
+15005550009 not SMS-capable → 21614, +15005550004 unsubscribed → 21610) and a ``201`` JSON
answer with the message's ``sid`` and ``status``. :class:`GatewayServer` answers whatever a
test configures. Both record every request, and ``fail_next`` scripts the next answers (a 429,
a 503, a slow answer) to exercise the error paths.

Each server runs in a thread on 127.0.0.1, a real socket::

    with TwilioServer("AC123", "secret") as twilio:
        ...  # base_url = twilio.url
        assert twilio.messages[0]["To"] == "+14155550100"
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import attrs

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAGIC_NUMBERS = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
}


@attrs.define
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    accepted: bool = False  # TwilioServer: the message was created (answered 201)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Scripted:
    status: int
    document: Any = None
    delay: float = 0.0


class LocalServer:
    """A threaded HTTP/1.1 server (keep-alive, like the real APIs) recording every request."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm on, the body waits
            # for the client's delayed ACK (~40 ms a response on Linux). Real APIs do not.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._serve()

            def do_PUT(self) -> None:  # noqa: N802
                self._serve()

            def do_PATCH(self) -> None:  # noqa: N802
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with server._lock:
                    server.requests.append(recorded)
                    scripted = server.script.popleft() if server.script else None
                if scripted is not None:
                    time.sleep(scripted.delay)
                    status, document = scripted.status, scripted.document
                else:
                    status, document = server.answer(recorded)
                payload = b"" if document is None else json.dumps(document).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, request: Recorded) -> tuple[int, Any]:
        return 200, {}

    def fail_next(self, status: int, document: Any = None, *, delay: float = 0.0, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and ``document`` after ``delay`` s."""
        self.script.extend(Scripted(status, document, delay) for _ in range(times))

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class TwilioServer(LocalServer):
    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-auth-token"):
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token

    def __enter__(self) -> TwilioServer:
        super().__enter__()
        return self

    @property
    def messages(self) -> list[dict[str, str]]:
        """The forms of the messages Twilio accepted (answered 201)."""
        return [r.form() for r in self.requests if r.accepted]

    def answer(self, request: Recorded) -> tuple[int, Any]:
        match = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", request.path)
        if request.method != "POST" or match is None:
            return 404, twilio_error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected or match.group(1) != self.account_sid:
            return 401, twilio_error(401, 20003, "Authenticate")
        if not request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return 400, twilio_error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
        form = request.form()
        to, body = form.get("To", ""), form.get("Body", "")
        if not to:
            return 400, twilio_error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return 400, twilio_error(400, 21602, "Message body is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return 400, twilio_error(400, 21603, "The 'From' phone number is required.")
        if to in MAGIC_NUMBERS:
            code, message = MAGIC_NUMBERS[to]
            return 400, twilio_error(400, code, message)
        if not E164.match(to):
            return 400, twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if len(body) > 1600:
            return 400, twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        request.accepted = True
        sid = "SM" + uuid.uuid4().hex
        return 201, {
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": form.get("From"), "body": body, "status": "queued",
            "messaging_service_sid": form.get("MessagingServiceSid"), "num_segments": "1", "direction": "outbound-api",
            "api_version": "2010-04-01", "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }


class GatewayServer(LocalServer):
    """Answers every request with ``status`` and ``document(request)`` (default: 202 and a
    fresh id under ``data.messages.0.id``)."""

    def __init__(self, status: int = 202) -> None:
        super().__init__()
        self.status = status

    def __enter__(self) -> GatewayServer:
        super().__enter__()
        return self

    def answer(self, request: Recorded) -> tuple[int, Any]:
        return self.status, {"data": {"messages": [{"id": "gw-" + uuid.uuid4().hex[:12], "state": "accepted"}]}}
