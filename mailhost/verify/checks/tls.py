"""TLS on the mail ports, seen from outside: the chain and the name, the expiry, the protocol versions.

A sending server or a mail client connects to the host's address but checks the certificate against the
host *name*, so every check takes both: `address` to connect to, `hostname` for SNI and the name check.

The conversation helpers (connect, greet, STARTTLS) live here and are shared with the SMTP policy checks
(`checks.smtp`): one place knows how each protocol reaches TLS, and how a failure becomes a Result.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import socket
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

from cryptography import x509

# `timeout` is a parameter here (seconds), so the Result helper goes by another name.
from mailhost.services import SERVICES, services_on
from mailhost.verify.result import Result, error, ok, warn
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

    @property
    def protocol(self) -> str:
        return self.value.rsplit("-", 1)[0]

    @property
    def implicit(self) -> bool:
        return self.value.endswith("-tls")


@dataclass(frozen=True)
class Endpoint:
    """One mail port and how it starts TLS."""

    port: int
    mode: Mode
    purpose: str
    feature: str | None = None  # the spec's `features` flag that turns it on; None: always on


# Every TLS port of `mailhost.services`, with how its protocol starts TLS.
ENDPOINTS = tuple(Endpoint(s.port, Mode(f"{s.protocol}-{'tls' if s.tls == 'implicit' else 'starttls'}"), s.purpose,
                           s.feature) for s in SERVICES if s.tls)


def endpoints(features) -> list[Endpoint]:
    """The TLS endpoints a spec's `features` turn on."""
    on = {s.port for s in services_on(features)}
    return [e for e in ENDPOINTS if e.port in on]


# --- talking to a mail server -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """One server reply: its code ("250", "OK", "+OK") and its text, line by line."""

    code: str
    lines: tuple[str, ...]

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
                         _verify_fix(cause.verify_code))
        if isinstance(cause, ssl.SSLError):
            return error(check, subject, f"TLS handshake failed: {describe(cause)}",
                         "see the server's log for the handshake error; check its certificate and TLS settings")
        if isinstance(cause, ProtocolError):
            return error(check, subject, f"unexpected answer to {step}: {cause}")
        if step.startswith("connect"):
            return error(check, subject, f"port closed or filtered: {describe(cause)}",
                         "make sure the service listens on this port and the firewall lets it through")
        return error(check, subject, f"connection lost during {step}: {describe(cause)}")


def describe(exc: BaseException) -> str:
    """An exception in a few words, without OpenSSL's source locations."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message.rstrip(".")
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc)) or type(exc).__name__


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
        with self.step(HANDSHAKE):
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


class SmtpSession(Session):
    """SMTP (RFC 5321) with EHLO and STARTTLS (RFC 3207)."""

    ehlo_reply: Reply

    def read_reply(self) -> Reply:
        lines = []
        while True:
            line = self.readline()
            code, sep = line[:3], line[3:4]
            if not code.isdigit() or sep not in ("-", " ", ""):
                raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:])
            if sep != "-":
                return Reply(code, tuple(lines))

    def hello(self) -> None:
        # A multi-line greeting is read whole: postscreen sends "220-" first and takes a client that talks
        # before the last line for a bot.
        with self.step("greeting"):
            self.greeting = self.read_reply()
        self.expect(self.greeting, "220", "greeting")
        self.ehlo()

    def ehlo(self) -> None:
        self.ehlo_reply = self.expect(self.command(f"EHLO {HELO_NAME}", "EHLO"), "250", "EHLO")
        words = (line.split(None, 1) for line in self.ehlo_reply.lines[1:])
        self.capabilities = {w[0].upper(): w[1] if len(w) > 1 else "" for w in words if w}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "220", context)

    def after_tls(self) -> None:
        self.ehlo()

    def goodbye(self) -> None:
        self.command("QUIT")


class ImapSession(Session):
    """IMAP (RFC 9051/3501): tagged commands, capabilities in the greeting or from CAPABILITY."""

    def __init__(self, address: str, port: int, hostname: str, timeout: float):
        self._tags = itertools.count(1)
        super().__init__(address, port, hostname, timeout)

    def command(self, line: str, step: str | None = None) -> Reply:
        tag = f"v{next(self._tags)}"
        with self.step(step or line.split()[0]):
            self.send(f"{tag} {line}")
            untagged = []
            while not (got := self.readline()).startswith(tag + " "):
                untagged.append(got)
        status, _, text = got[len(tag) + 1:].partition(" ")
        return Reply(status.upper(), (*untagged, text))

    def hello(self) -> None:
        with self.step("greeting"):
            line = self.readline()
        if not line.upper().startswith(("* OK", "* PREAUTH")):
            raise SessionFailure("greeting", ProtocolError(f"the server answered {line[:80]!r}"))
        self.greeting = Reply("OK", (line,))
        listed = re.search(r"\[CAPABILITY ([^\]]*)\]", line, re.IGNORECASE)
        if listed:
            self._learn(listed.group(1))
        else:
            self.capability()

    def capability(self) -> None:
        reply = self.expect(self.command("CAPABILITY"), "OK", "CAPABILITY")
        for line in reply.lines:
            if line.upper().startswith("* CAPABILITY "):
                self._learn(line[len("* CAPABILITY "):])

    def _learn(self, words: str) -> None:
        self.capabilities = {w.upper(): "" for w in words.split()}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "OK", context)

    def after_tls(self) -> None:
        self.capability()

    def goodbye(self) -> None:
        self.command("LOGOUT")


class Pop3Session(Session):
    """POP3 (RFC 1939), here only over implicit TLS (port 995)."""

    def read_reply(self) -> Reply:
        line = self.readline()
        code, _, text = line.partition(" ")
        if code.upper() not in ("+OK", "-ERR"):
            raise ProtocolError(f"not a POP3 reply: {line[:80]!r}")
        return Reply(code.upper(), (text,))

    def hello(self) -> None:
        with self.step("greeting"):
            self.greeting = self.read_reply()
        self.expect(self.greeting, "+OK", "greeting")

    def goodbye(self) -> None:
        self.command("QUIT")


class SieveSession(Session):
    """ManageSieve (RFC 5804): the greeting is the capability list, ended by OK."""

    def read_reply(self) -> Reply:
        lines = []
        while True:
            line = self.readline()
            word = line.split(" ", 1)[0].upper()
            if word in ("OK", "NO", "BYE"):
                return Reply(word, (*lines, line[len(word):].strip()))
            lines.append(line)

    def hello(self) -> None:
        with self.step("greeting"):
            self.greeting = self.read_reply()
        self._learn(self.expect(self.greeting, "OK", "greeting"))

    def _learn(self, reply: Reply) -> None:
        quoted = (re.findall(r'"([^"]*)"', line) for line in reply.lines[:-1])
        self.capabilities = {q[0].upper(): " ".join(q[1:]) for q in quoted if q}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "OK", context)

    def after_tls(self) -> None:
        with self.step("capabilities after STARTTLS"):  # RFC 5804 2.2: sent unasked after the handshake
            self._learn(self.expect(self.read_reply(), "OK", "capabilities after STARTTLS"))

    def goodbye(self) -> None:
        self.command("LOGOUT")


SESSIONS: dict[str, type[Session]] = {
    "smtp": SmtpSession, "imap": ImapSession, "pop3": Pop3Session, "managesieve": SieveSession,
}


def open_session(address: str, port: int, mode: Mode | str, hostname: str, context: ssl.SSLContext | None = None,
                 timeout: float = 10.0, *, handshake_only: bool = False) -> Session:
    """Connect and greet; with a `context`, reach TLS the way `mode` says (implicit, or STARTTLS).

    Without a context a STARTTLS mode stays in clear text (for looking at what is offered before TLS).
    `handshake_only` stops right after the handshake: enough to look at the certificate or the version.
    Raises SessionFailure; use the session as a context manager so it ends politely."""
    mode = Mode(mode)
    if mode.implicit and context is None:
        raise ValueError(f"{mode.value} needs a TLS context")
    session = SESSIONS[mode.protocol](address, port, hostname, timeout)
    try:
        if mode.implicit:
            session.upgrade(context)
            if not handshake_only:
                session.hello()
        else:
            session.hello()
            if context is not None:
                session.starttls(context)
                if not handshake_only:
                    session.after_tls()
    except BaseException:
        session.close()
        raise
    return session


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


# --- the TLS checks -----------------------------------------------------------------------------------------

LEGACY_VERSIONS = {ssl.TLSVersion.TLSv1: "TLS 1.0", ssl.TLSVersion.TLSv1_1: "TLS 1.1"}
# OpenSSL 3 signs TLS 1.0/1.1 handshakes with SHA-1, which it allows only at security level 0.
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
VERSIONS_FIX = ("allow TLS 1.2 and newer only (Postfix: smtpd_tls_protocols and smtpd_tls_mandatory_protocols "
                "= >=TLSv1.2; Dovecot: ssl_min_protocol = TLSv1.2)")
# Handshake errors that mean "the server will not": an alert it sent, or a version it will not speak.
_REFUSALS = ("ALERT", "UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER")


def legacy_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly `version` (TLS 1.0 or 1.1) and as many ciphers as OpenSSL can."""
    context = unverified_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deliberately: we ask for what must be refused
        context.minimum_version = context.maximum_version = version
    context.set_ciphers(LEGACY_CIPHERS)
    return context


def can_offer(version: ssl.TLSVersion) -> bool:
    """Can this machine's OpenSSL send a ClientHello for `version` alone? Builds without TLS 1.0/1.1, or with
    a policy against them, cannot; then "refused" would be our failure, not the server's answer."""
    outgoing = ssl.MemoryBIO()
    try:
        client = legacy_context(version).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="probe.invalid")
        client.do_handshake()
    except ssl.SSLWantReadError:  # the hello went out; now it would wait for the server
        return outgoing.pending > 0
    except (ssl.SSLError, ValueError):
        return False
    return False


def _accepts(address: str, port: int, mode: Mode, hostname: str, version: ssl.TLSVersion, timeout: float) -> bool:
    """Does the server complete a handshake at `version`? Raises SessionFailure when that is not known."""
    try:
        with open_session(address, port, mode, hostname, legacy_context(version), timeout, handshake_only=True):
            return True
    except SessionFailure as failure:
        cause = failure.cause
        refused = isinstance(cause, (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
            isinstance(cause, ssl.SSLError) and any(r in (cause.reason or "") for r in _REFUSALS))
        if failure.step == HANDSHAKE and refused:
            return False
        raise


def _too_old(failure: SessionFailure) -> bool:
    """Did the handshake fail because the server speaks no version our client offers (TLS 1.2 and 1.3)?"""
    reason = getattr(failure.cause, "reason", None) or ""
    return failure.step == HANDSHAKE and ("PROTOCOL_VERSION" in reason or reason == "UNSUPPORTED_PROTOCOL")


def check_tls(address: str, port: int, mode: Mode | str, hostname: str, ca_file: str | None = None,
              min_days: int = 14, timeout: float = 10.0) -> list[Result]:
    """The certificate (chain, name), its expiry and the TLS versions of one port.

    `address` is what to connect to; `hostname` is what the certificate must name (and the SNI).
    Results: "tls.connect", "tls.starttls" or "tls.versions" (no TLS 1.2+) alone when no TLS session comes
    about; otherwise "tls.certificate", "tls.expiry" and "tls.versions"."""
    mode, subject = Mode(mode), f"{hostname}:{port}"
    rejected: ssl.SSLCertVerificationError | None = None
    try:
        with open_session(address, port, mode, hostname, verifying_context(ca_file), timeout,
                          handshake_only=True) as session:
            cert, version, cipher = session.certificate(), session.tls_version, session.cipher
    except SessionFailure as failure:
        if _too_old(failure):
            return [error("tls.versions", subject, f"no TLS 1.2 or newer: {describe(failure.cause)}", VERSIONS_FIX)]
        if not isinstance(failure.cause, ssl.SSLCertVerificationError):
            check = "tls.starttls" if isinstance(failure.cause, StartTLSNotOffered) else "tls.connect"
            return [failure.result(check, subject)]
        rejected = failure.cause
        try:  # look again, taking any certificate: when it ends, which versions the port speaks
            with open_session(address, port, mode, hostname, unverified_context(), timeout,
                              handshake_only=True) as session:
                cert, version, cipher = session.certificate(), session.tls_version, session.cipher
        except SessionFailure as again:
            return [failure.result("tls.certificate", subject), again.result("tls.connect", subject)]
    return [_chain(cert, rejected, hostname, ca_file, subject), _expiry(cert, min_days, subject),
            _versions(address, port, mode, hostname, timeout, f"{version} ({cipher})", subject)]


def _names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _issuer(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()


def _verify_fix(code: int) -> str:
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return "serve a certificate that names this host (certbot requests one for the spec's hostname)"
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "renew it (certbot.timer), and make sure Postfix and Dovecot were reloaded afterwards"
    if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
        return "check the clocks of the server and of this machine"
    return "serve a certificate from a CA that senders trust, with its full chain (fullchain.pem)"


def _chain(cert: x509.Certificate, rejected: ssl.SSLCertVerificationError | None, hostname: str,
           ca_file: str | None, subject: str) -> Result:
    if rejected is None:
        return ok("tls.certificate", subject, f"valid for {hostname}, issued by {_issuer(cert)}")
    message = f"certificate not accepted: {describe(rejected)}"
    if rejected.verify_code == 62:
        message += f" (it names {', '.join(_names(cert)) or 'nothing'})"
    elif rejected.verify_code in (2, 18, 19, 20, 21):  # issuer unknown, self-signed
        message += f" (issued by {_issuer(cert)}; trusted here: {ca_file or 'the system CAs'})"
    return error("tls.certificate", subject, message, _verify_fix(rejected.verify_code))


def _expiry(cert: x509.Certificate, min_days: int, subject: str) -> Result:
    now = dt.datetime.now(dt.timezone.utc)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    days = (end - now).total_seconds() / 86400
    until = f"{end:%Y-%m-%d %H:%M} UTC"
    renew = "certbot renews 30 days ahead: see `systemctl status certbot.timer` and `journalctl -u certbot`"
    if now < start:
        return error("tls.expiry", subject, f"not valid before {start:%Y-%m-%d %H:%M} UTC",
                     "check the clocks of the server and of this machine")
    if days <= 0:
        return error("tls.expiry", subject, f"expired on {until}", renew)
    if days < min_days:
        return warn("tls.expiry", subject, f"expires on {until}, in {days:.0f} days (warning from {min_days})", renew)
    return ok("tls.expiry", subject, f"valid until {until} ({days:.0f} days)")


def _versions(address: str, port: int, mode: Mode, hostname: str, timeout: float, negotiated: str,
              subject: str) -> Result:
    """TLS 1.2+ was negotiated already (our client offers nothing older); TLS 1.0 and 1.1 must be refused."""
    accepted, unanswered, untested = [], [], []
    for version, name in LEGACY_VERSIONS.items():
        if not can_offer(version):
            untested.append(f"{name} (this machine's OpenSSL cannot offer it)")
            continue
        try:
            if _accepts(address, port, mode, hostname, version, timeout):
                accepted.append(name)
        except SessionFailure as failure:
            if isinstance(failure.cause, TimeoutError):
                unanswered.append(f"{name}, {failure.step}")
            else:
                untested.append(f"{name} ({failure})")
    found = f"negotiates {negotiated}"
    if accepted:
        return error("tls.versions", subject, f"accepts {' and '.join(accepted)}; {found}", VERSIONS_FIX)
    if unanswered:
        return timed_out("tls.versions", subject, "; ".join(unanswered))
    if untested:
        return warn("tls.versions", subject, f"{found}; could not test from here: {'; '.join(untested)}",
                    "run verify from a machine whose OpenSSL can still offer TLS 1.0 and 1.1")
    return ok("tls.versions", subject, f"{found}; refuses {' and '.join(LEGACY_VERSIONS.values())}")
