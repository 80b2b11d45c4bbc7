"""``[plugins.email]`` in crmkit.toml.

Secrets come from the environment with ``${VAR}`` (``password = "${SMTP_PASSWORD}"``); the
passwords (SMTP, IMAP) and the signing secrets are left out of the settings' repr, so they never
reach a log line or an error message.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import urlsplit

import attrs
from crmkit.errors import ConfigError

SECURITY = ("starttls", "ssl", "none")
SECTION = "[plugins.email]"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


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

    #: Inbound mail by IMAP polling (``crmkit email poll``; ``crmkit worker`` polls every
    #: ``imap_poll_seconds``); off while ``imap_host`` is empty. ``imap_security``: "ssl"
    #: (IMAPS, usually port 993), "starttls" (port 143, refused if the server does not offer
    #: it) or "none" (a server on this machine only). At most ``imap_batch`` messages per poll;
    #: a poller holds the mailbox for ``imap_lease_seconds`` (renewed per message), so two
    #: workers never poll one mailbox at once and a killed one is replaced after that long.
    #: ``imap_mark_seen`` flags handled messages \Seen for people reading the mailbox too (what
    #: was handled is tracked by UID in the database, not by the flag).
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "ssl"
    imap_username: str = ""
    imap_password: str = attrs.field(default="", repr=False)
    imap_mailbox: str = "INBOX"
    imap_poll_seconds: float = 60.0
    imap_batch: int = 50
    imap_lease_seconds: float = 300.0
    imap_mark_seen: bool = True

    #: Open and click tracking for messages of these purposes (e.g. ["marketing"]; none by
    #: default): HTML bodies get a pixel (``<public_url>/email/o/<token>.gif``) and their links
    #: go through ``<public_url>/email/c/<token>``, signed with ``tracking_secret`` (default:
    #: ``unsubscribe_secret``). Opens and clicks of one message are logged once per
    #: ``tracking_debounce_seconds`` (per link, for clicks).
    tracking_purposes: list[str] = attrs.field(factory=list)
    tracking_secret: str = attrs.field(default="", repr=False)
    tracking_debounce_seconds: int = 3600

    #: The preference page (``<public_url>/email/preferences/<token>``, linked from the footer
    #: of every non-transactional message) lists these purposes ("marketing=News and offers":
    #: purpose, then the label a reader sees) and any other e-mail purpose in the contact's
    #: consent ledger.
    preference_purposes: list[str] = attrs.field(factory=list)

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
        problems.extend(self._imap_problems())
        problems.extend(self._tracking_problems())
        if problems:
            raise ConfigError(f"{SECTION}: " + "; ".join(problems))

    def _imap_problems(self) -> list[str]:
        if not self.imap_host:
            return []
        problems = []
        if self.imap_security not in SECURITY:
            problems.append(f"imap_security must be one of {', '.join(SECURITY)}, got {self.imap_security!r}")
        if not 0 < self.imap_port < 65536:
            problems.append(f"imap_port must be 1–65535, got {self.imap_port}")
        if self.imap_security == "none" and self.imap_host not in LOCAL_HOSTS:
            problems.append(f"imap_security = \"none\" would send the password in clear to {self.imap_host}: use ssl or starttls "
                            f"(none is for a server on this machine: {', '.join(LOCAL_HOSTS)})")
        if not self.imap_username or not self.imap_password:
            problems.append("imap_host needs imap_username and imap_password (use ${VAR} for the password)")
        if not self.imap_mailbox.strip():
            problems.append("imap_mailbox cannot be empty")
        if self.imap_poll_seconds <= 0 or self.imap_lease_seconds <= 0 or self.imap_batch < 1:
            problems.append("imap_poll_seconds and imap_lease_seconds must be positive, imap_batch at least 1")
        return problems

    def _tracking_problems(self) -> list[str]:
        problems = []
        if self.tracking_purposes and not (self.public_url and self.signing_secret("tracking")):
            problems.append("tracking_purposes needs public_url and tracking_secret (or unsubscribe_secret)")
        if self.tracking_secret and len(self.tracking_secret) < 16:
            problems.append("tracking_secret must be at least 16 characters")
        if self.tracking_debounce_seconds < 1:
            problems.append("tracking_debounce_seconds must be at least 1")
        try:
            self.preference_labels()
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    def signing_secret(self, use: str) -> str:
        """The secret for ``use`` ("unsubscribe", "tracking", "preferences"): tracking may have
        its own; every use signs a message with its own prefix, so one secret never produces a
        token valid for another use."""
        return (self.tracking_secret or self.unsubscribe_secret) if use == "tracking" else self.unsubscribe_secret

    def preference_labels(self) -> dict[str, str]:
        """``preference_purposes`` as {purpose: label}, in order."""
        labels = {}
        for entry in self.preference_purposes:
            purpose, _, label = entry.partition("=")
            if not purpose.strip() or len(purpose.strip()) > 64:
                raise ValueError(f"preference_purposes: {entry!r} is not 'purpose=label'")
            labels[purpose.strip()] = label.strip() or purpose.strip()
        return labels

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
