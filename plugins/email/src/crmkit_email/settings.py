"""``[plugins.email]`` in crmkit.toml.

Secrets come from the environment with ``${VAR}`` (``password = "${SMTP_PASSWORD}"``); the
password and the unsubscribe secret are left out of the settings' repr, so they never reach a
log line or an error message.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import urlsplit

import attrs
from crmkit.errors import ConfigError

SECURITY = ("starttls", "ssl", "none")
SECTION = "[plugins.email]"


@attrs.define
class EmailSettings:
    #: The SMTP server (a relay or your provider's submission endpoint).
    host: str = "localhost"
    port: int = 587
    #: "starttls" (upgrade a plain connection, refused if the server does not offer it),
    #: "ssl" (implicit TLS, usually port 465) or "none" (a local relay only).
    security: str = "starttls"
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    #: A PEM file of extra CA certificates to trust (a private relay); empty: the system's.
    ca_file: str = ""
    #: Seconds to wait for the server on connect and on every command.
    timeout: float = 30.0

    #: The From header, and the envelope sender that receives bounces (default: from_address).
    from_address: str = ""
    from_name: str = ""
    reply_to: str = ""
    bounce_address: str = ""
    #: The domain of generated Message-IDs (default: from_address's domain).
    message_id_domain: str = ""

    #: One SMTP connection carries at most this many messages, and is not reused after this
    #: many idle seconds without a NOOP check (servers drop idle connections).
    max_messages_per_connection: int = 100
    idle_check_seconds: float = 5.0

    #: Per recipient domain: at most this many messages per second (0: no limit), with bursts
    #: of ``throttle_burst``; ``domain_throttles`` overrides per domain ("gmail.com=5"). A send
    #: waits for its domain at most ``throttle_max_wait`` seconds, else it is retried later.
    #: The limit is per worker process.
    throttle_per_second: float = 0.0
    throttle_burst: int = 10
    domain_throttles: list[str] = attrs.field(factory=list)
    throttle_max_wait: float = 5.0

    #: Unsubscribe links on every non-transactional message (RFC 2369 / RFC 8058): the
    #: one-click URL is ``<public_url>/email/unsubscribe/<token>`` (served by the HTTP API),
    #: the token signed with ``unsubscribe_secret``; ``unsubscribe_address`` adds a mailto
    #: link, handled by the inbound listener.
    public_url: str = ""
    unsubscribe_secret: str = attrs.field(default="", repr=False)
    unsubscribe_address: str = ""

    def check(self) -> None:
        """Refuse settings that could only fail later, naming the key (called when the CRM
        opens, so a typo never surfaces as a dead-lettered campaign)."""
        problems = []
        if self.security not in SECURITY:
            problems.append(f"security must be one of {', '.join(SECURITY)}, got {self.security!r}")
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1–65535, got {self.port}")
        if self.timeout <= 0:
            problems.append("timeout must be positive")
        if self.max_messages_per_connection < 1:
            problems.append("max_messages_per_connection must be at least 1")
        if self.throttle_per_second < 0 or self.throttle_burst < 1 or self.throttle_max_wait < 0:
            problems.append("throttle_per_second and throttle_max_wait cannot be negative, throttle_burst is at least 1")
        if bool(self.username) != bool(self.password):
            problems.append("username and password go together")
        for key in ("from_address", "reply_to", "bounce_address", "unsubscribe_address"):
            value = getattr(self, key)
            if value and not _is_address(value):
                problems.append(f"{key}: {value!r} is not an e-mail address")
        try:
            self.domain_rates()
        except ValueError as exc:
            problems.append(str(exc))
        if self.public_url:
            url = urlsplit(self.public_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                problems.append(f"public_url must be an http(s) URL, got {self.public_url!r}")
            if not self.unsubscribe_secret:
                problems.append("public_url needs unsubscribe_secret (the unsubscribe links are signed with it)")
        if self.unsubscribe_secret and len(self.unsubscribe_secret) < 16:
            problems.append("unsubscribe_secret must be at least 16 characters")
        if problems:
            raise ConfigError(f"{SECTION}: " + "; ".join(problems))

    def domain_rates(self) -> dict[str, float]:
        rates = {}
        for entry in self.domain_throttles:
            domain, sep, rate = entry.partition("=")
            try:
                value = float(rate)
            except ValueError:
                value = -1.0
            if not sep or not domain.strip() or value < 0:
                raise ValueError(f"domain_throttles: {entry!r} is not 'domain=messages per second'")
            rates[domain.strip().lower()] = value
        return rates

    @property
    def sender(self) -> str:
        """The envelope sender (MAIL FROM)."""
        return self.bounce_address or self.from_address

    @property
    def id_domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2] or "crmkit.invalid"


def _is_address(value: str) -> bool:
    try:
        address = Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        return False
    return bool(address.username and address.domain)
