"""What every session shares: a TCP conversation upgraded to TLS on request, replies, and how a failure at any
step becomes a Result. Each protocol is a subclass in a module of its own."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum

from cryptography import x509

from mailhost.verify.result import Result, error
from mailhost.verify.result import timeout as timed_out

HELO_NAME = "verify.mailhost.invalid"  # RFC 2606 .invalid: plainly a probe, never a real host's name
MAX_LINE = 16384  # a longer "line" is not a mail protocol talking
HANDSHAKE = "TLS handshake"


class Mode(str, Enum):
    """How a port speaks TLS: from the first byte (implicit) or after the protocol's STARTTLS."""

    SMTP_STARTTLS = "smtp-starttls"
    SMTP_TLS = "smtp-tls"
    IMAP_STARTTLS = "imap-starttls"
    IMAP_TLS = "imap-tls"
    POP3_TLS = "pop3-tls"
    SIEVE_STARTTLS = "managesieve-starttls"
    HTTPS_TLS = "https-tls"

    @property
    def protocol(self) -> str:
        return self.value.rsplit("-", 1)[0]

    @property
    def implicit(self) -> bool:
        return self.value.endswith("-tls")


@dataclass(frozen=True)
class Reply:
    """One server reply: its code ("250", "OK", "+OK") and its text, line by line."""

    code: str
    lines: tuple[str, ...]
    literals: tuple[bytes, ...] = ()  # IMAP: the data sent as {size} literals (a fetched message)

    def __str__(self) -> str:
        return f"{self.code} {' / '.join(line for line in self.lines if line)}".strip()


class ProtocolError(Exception):
    """The server answered, but not as wanted: a refused greeting or command, a garbled reply."""


class StartTLSNotOffered(ProtocolError):
    """The server does not offer STARTTLS."""


class SessionFailure(Exception):
    """Talking to the server failed at `step` ("EHLO", "TLS handshake"); `cause` says how.

    Every check turns it into a Result with `result()`, so a refused port or a timeout reads the same
    in every check."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"{step}: {describe(cause)}")
        self.step, self.cause = step, cause

    def result(self, check: str, subject: str) -> Result:
        cause, step = self.cause, self.step
        if isinstance(cause, TimeoutError):
            return timed_out(check, subject, step)
        if isinstance(cause, StartTLSNotOffered):
            return error(check, subject, "STARTTLS not offered: everything on this port crosses the network in clear",
                         "give the service a certificate and enable TLS (Postfix: smtpd_tls_security_level = may; "
                         "Dovecot: ssl = required)")
        if isinstance(cause, ssl.SSLCertVerificationError):
            return error(check, subject, f"certificate not accepted: {describe(cause)}",
                         verify_fix(cause.verify_code))
        if isinstance(cause, ssl.SSLError):
            return error(check, subject, f"TLS handshake failed: {describe(cause)}",
                         "see the server's log for the handshake error; check its certificate and TLS settings")
        if isinstance(cause, ProtocolError):
            return error(check, subject, f"unexpected answer to {step}: {cause}")
        if step.startswith("connect"):
            return error(check, subject, f"port closed or filtered: {describe(cause)}",
                         "make sure the service listens on this port and the firewall lets it through")
        return error(check, subject, f"connection lost during {step}: {describe(cause)}")


def sasl_plain(user: str, password: str) -> str:
    """The SASL PLAIN initial response (RFC 4616), base64: SMTP AUTH and IMAP AUTHENTICATE send the same."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def describe(exc: BaseException) -> str:
    """An exception in a few words, without OpenSSL's source locations."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message.rstrip(".")
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc)) or type(exc).__name__


# The steps where a loaded server is slowest: its greeting (a process spawned for the client, postscreen's 6 s
# pause on port 25, the client's name looked up) and the TLS handshake (public-key operations). They get this
# many times a step's timeout, so a slow but working server is not reported as down (RFC 5321 4.5.3.2 has
# senders wait five minutes for a greeting); every other step keeps the timeout.
SLOW_STEP_PATIENCE = 3


class Session:
    """One conversation with a mail server over TCP, upgraded to TLS on request. Subclasses speak a protocol.

    Every network step runs inside `step()`, which turns whatever goes wrong into a `SessionFailure` naming
    the step; a timeout applies to each step."""

    def __init__(self, address: str, port: int, hostname: str, timeout: float):
        self.hostname = hostname
        self.capabilities: dict[str, str] = {}  # keyword (upper case) -> its arguments
        self.greeting: Reply | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self._buffer = b""
        self._usable = True
        with self.step(f"connect to {address}:{port}"):
            self.sock: socket.socket = socket.create_connection((address, port), timeout=timeout)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        try:
            yield
        except (OSError, ProtocolError) as exc:  # ssl errors and timeouts are OSErrors too
            self._usable = False  # mid-reply or mid-handshake: no point in a polite goodbye
            raise SessionFailure(name, exc) from exc

    @contextmanager
    def patiently(self) -> Iterator[None]:
        """For the block, SLOW_STEP_PATIENCE times the socket's timeout."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(timeout * SLOW_STEP_PATIENCE if timeout else None)
        try:
            yield
        finally:
            with suppress(OSError):  # a handshake that failed left a closed socket: nothing to restore
                self.sock.settimeout(timeout)

    @property
    def usable(self) -> bool:
        """False once a step failed half-way: the conversation is out of step, only closing is left."""
        return self._usable

    def expect(self, reply: Reply, code: str, step: str) -> Reply:
        if not reply.code.upper().startswith(code):
            raise SessionFailure(step, ProtocolError(f"the server answered {reply}"))
        return reply

    def upgrade(self, context: ssl.SSLContext) -> None:
        """The TLS handshake, with SNI and the name check for `hostname`."""
        self._buffer = b""  # RFC 3207 4.2: nothing read before the handshake counts after it
        with self.step(HANDSHAKE), self.patiently():
            self.sock = context.wrap_socket(self.sock, server_hostname=self.hostname)
        self.tls_version = self.sock.version()
        self.cipher = (self.sock.cipher() or ("?",))[0]

    def certificate(self) -> x509.Certificate:
        """The server's certificate, as presented (also when it was not verified)."""
        return x509.load_der_x509_certificate(self.sock.getpeercert(binary_form=True))

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def readline(self) -> str:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError("a reply line longer than any mail protocol allows")
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionResetError(0, "the server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError(0, "the server closed the connection")
            self._buffer += data
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def command(self, line: str, step: str | None = None) -> Reply:
        with self.step(step or line.split()[0]):
            self.send(line)
            return self.read_reply()

    def close(self) -> None:
        """Say goodbye when the conversation is still in order (a server logs abrupt ends), then close."""
        if self._usable:
            try:
                self.sock.settimeout(min(self.sock.gettimeout() or 2.0, 2.0))
                self.goodbye()
            except SessionFailure:
                pass
        self.sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What each protocol fills in.
    def read_reply(self) -> Reply:
        raise NotImplementedError

    def hello(self) -> None:
        """Read the greeting and learn the capabilities."""
        raise NotImplementedError

    def starttls(self, context: ssl.SSLContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no STARTTLS")

    def after_tls(self) -> None:
        """Learn the capabilities again: the ones from before the handshake no longer count."""

    def goodbye(self) -> None:
        raise NotImplementedError

    def _starttls(self, command: str, ok_code: str, context: ssl.SSLContext) -> None:
        if "STARTTLS" not in self.capabilities:
            raise SessionFailure("STARTTLS", StartTLSNotOffered("STARTTLS is not among the capabilities"))
        self.expect(self.command(command, "STARTTLS"), ok_code, "STARTTLS")
        self.upgrade(context)


def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """What a careful client does: the chain up to `ca_file` (None: the system's CAs), the name, TLS 1.2+."""
    return ssl.create_default_context(cafile=ca_file)


def unverified_context() -> ssl.SSLContext:
    """Takes any certificate: to see what a server presents after verification failed, and for the policy
    probes, since a stranger trying to relay does not check certificates either."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verify_fix(code: int) -> str:
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return "serve a certificate that names this host (certbot requests one for the spec's hostname)"
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "renew it (certbot.timer), and make sure Postfix and Dovecot were reloaded afterwards"
    if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
        return "check the clocks of the server and of this machine"
    return "serve a certificate from a CA that senders trust, with its full chain (fullchain.pem)"


