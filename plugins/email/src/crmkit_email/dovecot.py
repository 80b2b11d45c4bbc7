"""A private Dovecot IMAP server for tests: :class:`Dovecot` runs Debian's ``dovecot`` in the
foreground with its own configuration in a temporary directory — 127.0.0.1 on a free port,
users from a static passwd-file, maildirs in the directory, plaintext login allowed (it listens
on the loopback only; give it a certificate for STARTTLS and IMAPS) — and stops it afterwards. Nothing system-wide is started or
changed.

:func:`find_dovecot` locates the binary and, when it is missing, installs Debian's
``dovecot-imapd`` with apt-get if it can (as root); it returns None with the reason otherwise,
so a test can skip — or fail, under ``CI=true``.
"""

from __future__ import annotations

import getpass
import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from crmkit_email.testing import free_port

PACKAGE = "dovecot-imapd"
CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def _binary() -> str | None:
    found = shutil.which("dovecot")
    return found or next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)


def find_dovecot(install: bool = True) -> tuple[str | None, str]:
    """(path to ``dovecot``, "") or (None, why not). With ``install``, a missing Dovecot is
    installed from Debian's package ``dovecot-imapd`` (root and apt-get needed)."""
    binary = _binary()
    if binary or not install:
        return binary, "" if binary else f"dovecot is not installed (apt-get install {PACKAGE}, or `make imap`)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, f"dovecot is not installed and cannot be installed here (run `make imap` as root: apt-get install {PACKAGE})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    try:
        if subprocess.run(install_cmd, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600, check=True)
            subprocess.run(install_cmd, env=env, capture_output=True, timeout=600, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"installing {PACKAGE} with apt-get failed: {exc}"
    binary = _binary()
    return binary, "" if binary else f"{PACKAGE} was installed but no dovecot binary was found"


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
default_internal_user = {internal_user}
default_login_user = {login_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


class Dovecot:
    """``with Dovecot("/usr/sbin/dovecot", {"crm": "secret"}) as server:`` — ``server.port``,
    ``server.append(user, raw)``, ``server.client(user)``.

    As root the mail processes run as Dovecot's own ``dovecot`` user (Dovecot refuses mail
    access as UID 0), so the directory is a world-searchable one under the system temp dir;
    otherwise everything runs as the current user.
    """

    def __init__(self, binary: str, users: dict[str, str], *, port: int | None = None, tls: tuple[Path, Path] | None = None):
        self.binary = binary
        self.users = dict(users)
        self.port = port or free_port()
        #: (certificate, key) PEM files: STARTTLS on ``port`` and IMAPS on ``imaps_port``.
        self.tls = tls
        self.imaps_port = free_port() if tls else 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        self.root = Path(tempfile.mkdtemp(prefix="crmkit-dovecot-"))
        self.root.chmod(0o755)
        (self.root / "mail").mkdir()
        (self.root / "state").mkdir()
        (self.root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()))
        if os.geteuid() == 0:
            mail_user, login_user, internal_user = pwd.getpwnam("dovecot"), "dovenull", "dovecot"
            os.chown(self.root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        else:
            mail_user = pwd.getpwuid(os.getuid())
            login_user = internal_user = getpass.getuser()
        ssl = "ssl = no"
        if self.tls:
            for name, source in zip(("cert.pem", "key.pem"), self.tls, strict=True):
                shutil.copyfile(source, self.root / name)
                (self.root / name).chmod(0o600)
            ssl = f"ssl = yes\nssl_cert = <{self.root / 'cert.pem'}\nssl_key = <{self.root / 'key.pem'}"
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(root=self.root, port=self.port, imaps_port=self.imaps_port, ssl=ssl,
                                        internal_user=internal_user, login_user=login_user,
                                        mail_uid=mail_user.pw_uid, mail_gid=mail_user.pw_gid))
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client(next(iter(self.users))).logout()
                return self
            except (OSError, imaplib.IMAP4.error):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    error = self.process.stderr.read().decode(errors="replace") if self.process.poll() is not None and self.process.stderr else ""
                    log = (self.root / "dovecot.log").read_text() if (self.root / "dovecot.log").exists() else ""
                    self.stop()
                    raise RuntimeError(f"dovecot did not start on 127.0.0.1:{self.port}: {error}{log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # the master stops its children
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, self.users[user])
        return client

    def append(self, user: str, raw: bytes, mailbox: str = "INBOX") -> int:
        """Deliver ``raw`` into the user's mailbox (IMAP APPEND); returns its UID."""
        client = self.client(user)
        try:
            typ, data = client.append(mailbox, None, None, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            assert typ == "OK", data
            # "[APPENDUID <uidvalidity> <uid>] …" (RFC 4315; Dovecot always answers it)
            return int(data[0].split(b"]")[0].split()[-1])
        finally:
            client.logout()

    def uids(self, user: str, criteria: str = "ALL", mailbox: str = "INBOX") -> list[int]:
        client = self.client(user)
        try:
            client.select(mailbox, readonly=True)
            typ, data = client.uid("SEARCH", criteria)
            return [int(x) for x in data[0].split()]
        finally:
            client.logout()
