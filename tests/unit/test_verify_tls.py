"""TLS checks against real servers on 127.0.0.1: aiosmtpd (STARTTLS and implicit TLS), a small
IMAP/POP3/ManageSieve responder, a port that never answers; certificates from a test CA made here.

The servers and the CA are also used by test_verify_smtp.py (imported from here)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailhost.verify.checks import tls
from mailhost.verify.checks.tls import ENDPOINTS, check_tls, endpoints
from mailhost.verify.sessions import Mode
from mailhost.verify.result import Status

HOST = "mail.example.org"
LOCAL = "127.0.0.1"
SHORT = 0.5  # seconds: for the servers that never answer


# --- a test CA and its certificates -------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(cn: str, names: list[str], key: ec.EllipticCurvePrivateKey, issuer: tuple | None,
                 days: tuple[float, float], ca: bool = False) -> x509.Certificate:
    """A certificate valid from now+days[0] to now+days[1], signed by issuer (cert, key) or by itself."""
    now = dt.datetime.now(dt.timezone.utc)
    issuer_cert, issuer_key = issuer or (None, key)
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A test CA (trusted through `ca_file`), another CA nobody trusts, and server certificates by kind."""

    KINDS: ClassVar = {  # kind -> (names, validity in days from now, issuer)
        "good": ([HOST], (-1, 90), "ca"),
        "wrong-name": (["other.example.net"], (-1, 90), "ca"),
        "expired": ([HOST], (-60, -1), "ca"),
        "expiring": ([HOST], (-1, 3), "ca"),
        "not-yet-valid": ([HOST], (1, 90), "ca"),
        "self-signed": ([HOST], (-1, 90), None),
        "untrusted": ([HOST], (-1, 90), "other"),
    }

    def __init__(self, directory: Path):
        self.dir = directory
        self.cas = {}
        for which, cn in (("ca", "mailhost test CA"), ("other", "some other CA")):
            key = ec.generate_private_key(ec.SECP256R1())
            self.cas[which] = (_certificate(cn, [], key, None, (-1, 365), ca=True), key)
        self.ca_file = self._write("ca.pem", self.cas["ca"][0])
        self._pairs: dict[str, tuple[str, str]] = {}

    def _write(self, filename: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        path = self.dir / filename
        data = cert.public_bytes(serialization.Encoding.PEM)
        if key is not None:
            data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        path.write_bytes(data)
        return str(path)

    def pem(self, kind: str) -> str:
        """A file holding the kind's certificate and key."""
        if kind not in self._pairs:
            names, days, issuer = self.KINDS[kind]
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(names[0], names, key, self.cas[issuer] if issuer else None, days)
            self._pairs[kind] = self._write(f"{kind}.pem", cert, key)
        return self._pairs[kind]

    def context(self, kind: str = "good", legacy: bool = False, old_only: bool = False) -> ssl.SSLContext:
        """A server context: TLS 1.2+; or (legacy) everything this OpenSSL can still speak down to TLS 1.0;
        or (old_only) nothing newer than TLS 1.1."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pem(kind))
        if legacy or old_only:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                if old_only:
                    context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# --- servers ------------------------------------------------------------------------------------------------

class Handler:
    """aiosmtpd handler: takes mail for example.org only (or for anyone: `relay`); counts DATA, which the
    probes must never send; `offer_auth` False hides AUTH from EHLO; `rcpt_reply`/`mail_reply` answer instead."""

    def __init__(self, relay: bool = False, offer_auth: bool = True, rcpt_reply: str = "",
                 mail_reply: str = ""):
        self.relay, self.offer_auth, self.rcpt_reply, self.mail_reply = relay, offer_auth, rcpt_reply, mail_reply
        self.data = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [r for r in responses if self.offer_auth or "AUTH" not in r]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        if not (self.relay or session.authenticated or address.endswith("@example.org")):
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data += 1
        return "554 5.6.0 the verify probes must not send DATA"


class EphemeralController(Controller):
    """aiosmtpd's Controller on port 0: learns the port the system gave before poking the server."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _never(server, session, envelope, mechanism, auth_data) -> AuthResult:
    return AuthResult(success=False)


@pytest.fixture
def smtp_server(pki):
    """Factory: start an aiosmtpd server on 127.0.0.1; returns (port, handler).

    Defaults are a good MX/submission server: STARTTLS (required), AUTH only after TLS, no relaying."""
    started = []

    def start(cert: str | None = "good", implicit: bool = False, hostname: str = HOST, legacy: bool = False,
              handler: Handler | None = None, **smtp: object) -> tuple[int, Handler]:
        handler = handler or Handler()
        context = pki.context(cert, legacy) if cert else None
        options = {"server_hostname": hostname, "authenticator": _never, "auth_require_tls": not implicit, **smtp}
        if implicit:
            options["ssl_context"] = context
        else:
            options.setdefault("require_starttls", context is not None)
            options["tls_context"] = context
        controller = EphemeralController(handler, hostname=LOCAL, port=0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # aiosmtpd warns about the deliberately bad settings
            controller.start()
        started.append(controller)
        return controller.port, handler

    yield start
    for controller in started:
        controller.stop()


class LineServer:
    """A tiny IMAP, POP3 or ManageSieve responder: greeting, capabilities, STARTTLS, goodbye.
    Enough for the TLS checks; `greeting` replaces the protocol's (to send garbage); `swallow_old_hellos`
    never answers a ClientHello for TLS 1.1 or older, as some middleboxes do."""

    def __init__(self, protocol: str, context: ssl.SSLContext | None, implicit: bool = False,
                 starttls: bool = True, greeting: bytes | None = None, swallow_old_hellos: bool = False):
        self.protocol, self.context, self.implicit = protocol, context, implicit
        self.swallow_old_hellos = swallow_old_hellos
        self.starttls = starttls and context is not None and not implicit
        self.greeting = greeting
        self.listener = socket.create_server((LOCAL, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _capabilities(self, tls_on: bool) -> bytes:
        starttls = self.starttls and not tls_on
        if self.protocol == "managesieve":
            return b'"IMPLEMENTATION" "test"\r\n"SIEVE" "fileinto"\r\n' + (b'"STARTTLS"\r\n' if starttls else b"") \
                + b'OK "ready"\r\n'
        return b"IMAP4rev1" + (b" STARTTLS" if starttls else b"")

    def _hello(self) -> bytes:
        if self.greeting is not None:
            return self.greeting
        if self.protocol == "imap":  # implicit: capabilities in the greeting; else the client asks
            return (b"* OK [CAPABILITY " + self._capabilities(True) + b"] ready\r\n") if self.implicit \
                else b"* OK test IMAP ready\r\n"
        if self.protocol == "pop3":
            return b"+OK test POP3 ready\r\n"
        return self._capabilities(False)

    def _respond(self, line: str, tls_on: bool) -> tuple[bytes, bool, bool]:
        """The reply to one line, whether TLS starts now, whether the conversation ends."""
        if self.protocol == "pop3":
            return (b"+OK bye\r\n", False, True) if line.upper() == "QUIT" else (b"-ERR no\r\n", False, False)
        if self.protocol == "managesieve":
            if line.upper() == "STARTTLS" and self.starttls and not tls_on:
                return b'OK "begin TLS"\r\n', True, False
            return (b'OK "bye"\r\n', False, True) if line.upper() == "LOGOUT" else (b'NO "no"\r\n', False, False)
        tag, _, command = line.partition(" ")
        command = command.upper()
        if command == "CAPABILITY":
            listing = b"* CAPABILITY " + self._capabilities(tls_on) + b"\r\n"
            return listing + tag.encode() + b" OK done\r\n", False, False
        if command == "STARTTLS" and self.starttls and not tls_on:
            return tag.encode() + b" OK begin TLS\r\n", True, False
        if command == "LOGOUT":
            return b"* BYE\r\n" + tag.encode() + b" OK bye\r\n", False, True
        return tag.encode() + b" BAD unknown\r\n", False, False

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        tls_on, buffer = False, b""
        try:
            if self.implicit:
                if self.swallow_old_hellos and self._old_hello(conn):
                    while conn.recv(4096):  # read it, answer nothing, until the client gives up
                        pass
                    return
                conn, tls_on = self.context.wrap_socket(conn, server_side=True), True
            conn.sendall(self._hello())
            while True:
                while b"\n" not in buffer:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                line, buffer = buffer.split(b"\n", 1)
                reply, upgrade, done = self._respond(line.decode().strip(), tls_on)
                conn.sendall(reply)
                if done:
                    return
                if upgrade:
                    conn, tls_on, buffer = self.context.wrap_socket(conn, server_side=True), True, b""
                    if self.protocol == "managesieve":
                        conn.sendall(self._capabilities(True))
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _old_hello(conn: socket.socket) -> bool:
        """The ClientHello's version (after the 5-byte record and 4-byte handshake headers) below TLS 1.2?"""
        hello = b""
        while len(hello) < 11:
            hello = conn.recv(11, socket.MSG_PEEK)
        return hello[9:11] < b"\x03\x03"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def line_server(pki):
    """Factory: LineServer(protocol, cert kind or None, ...) on 127.0.0.1; returns its port."""
    started = []

    def start(protocol: str, cert: str | None = "good", legacy: bool = False, old_only: bool = False,
              **options: object) -> int:
        server = LineServer(protocol, pki.context(cert, legacy, old_only) if cert else None, **options)
        started.append(server)
        return server.port

    yield start
    for server in started:
        server.close()


@pytest.fixture
def silent_port():
    """A port that accepts TCP (the kernel completes the handshake) and never says a word."""
    listener = socket.create_server((LOCAL, 0))
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def one_shot():
    """Factory: a port that sends `data` to its first client, reads its next words, then hangs up."""
    listeners = []

    def start(data: bytes) -> int:
        listener = socket.create_server((LOCAL, 0))
        listeners.append(listener)

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                conn.sendall(data)
                try:
                    conn.recv(4096)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()


@pytest.fixture
def closed_port() -> int:
    with socket.create_server((LOCAL, 0)) as probe:
        return probe.getsockname()[1]


def by_check(results) -> dict:
    checks = [r.check for r in results]
    assert len(checks) == len(set(checks)), results
    return {r.check: r for r in results}


def statuses(results) -> dict[str, Status]:
    return {r.check: r.status for r in results}


# --- endpoints ----------------------------------------------------------------------------------------------

def test_the_mail_ports_and_their_modes():
    assert {(e.port, e.mode, e.feature) for e in ENDPOINTS} == {
        (25, Mode.SMTP_STARTTLS, None), (587, Mode.SMTP_STARTTLS, None), (465, Mode.SMTP_TLS, None),
        (993, Mode.IMAP_TLS, None), (143, Mode.IMAP_STARTTLS, None),
        (995, Mode.POP3_TLS, "pop3"), (4190, Mode.SIEVE_STARTTLS, "managesieve"), (443, Mode.HTTPS_TLS, "web")}


@pytest.mark.parametrize("pop3, managesieve, web, extra", [
    (False, False, False, set()), (True, False, False, {995}), (False, True, False, {4190}),
    (True, True, False, {995, 4190}), (False, False, True, {443}), (True, True, True, {443, 995, 4190})])
def test_pop3_managesieve_and_https_are_checked_only_when_the_spec_turns_them_on(pop3, managesieve, web, extra):
    features = SimpleNamespace(pop3=pop3, managesieve=managesieve, web=web)
    assert {e.port for e in endpoints(features)} == {25, 143, 465, 587, 993} | extra
    assert Mode("managesieve-starttls").protocol == "managesieve" and not Mode.SIEVE_STARTTLS.implicit
    assert Mode("https-tls").protocol == "https" and Mode.HTTPS_TLS.implicit


# --- all good -----------------------------------------------------------------------------------------------

ALL_OK = {"tls.certificate": Status.OK, "tls.expiry": Status.OK, "tls.versions": Status.OK}


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_good_smtp_server(pki, smtp_server, implicit):
    port, handler = smtp_server(implicit=implicit)
    mode = Mode.SMTP_TLS if implicit else Mode.SMTP_STARTTLS
    results = by_check(check_tls(LOCAL, port, mode, HOST, pki.ca_file))
    assert statuses(results.values()) == ALL_OK, results
    assert all(r.subject == f"{HOST}:{port}" for r in results.values())
    assert "issued by mailhost test CA" in results["tls.certificate"].message
    assert "TLSv1.3" in results["tls.versions"].message
    if tls.can_offer(ssl.TLSVersion.TLSv1_1):
        assert "refuses TLS 1.0 and TLS 1.1" in results["tls.versions"].message
    assert handler.data == 0


@pytest.mark.parametrize("protocol,mode", [
    ("imap", Mode.IMAP_STARTTLS), ("imap", Mode.IMAP_TLS), ("pop3", Mode.POP3_TLS),
    ("managesieve", Mode.SIEVE_STARTTLS)])
def test_good_imap_pop3_sieve(pki, line_server, protocol, mode):
    port = line_server(protocol, implicit=mode.implicit)
    assert statuses(check_tls(LOCAL, port, mode, HOST, pki.ca_file)) == ALL_OK


@pytest.mark.parametrize("protocol,mode", [
    ("imap", Mode.IMAP_STARTTLS), ("managesieve", Mode.SIEVE_STARTTLS), ("imap", Mode.IMAP_TLS)])
def test_sessions_learn_the_capabilities_over_tls(pki, line_server, protocol, mode):
    port = line_server(protocol, implicit=mode.implicit)
    with tls.open_session(LOCAL, port, mode, HOST, tls.verifying_context(pki.ca_file)) as session:
        assert session.tls_version in ("TLSv1.2", "TLSv1.3")
        assert "STARTTLS" not in session.capabilities  # the list from before TLS is forgotten
        assert session.capabilities


def test_implicit_tls_needs_a_context():
    with pytest.raises(ValueError):
        tls.open_session(LOCAL, 1, Mode.IMAP_TLS, HOST, None)


# --- certificates -------------------------------------------------------------------------------------------

def test_wrong_name(pki, smtp_server):
    port, _ = smtp_server(cert="wrong-name")
    results = by_check(check_tls(LOCAL, port, "smtp-starttls", HOST, pki.ca_file))
    cert = results["tls.certificate"]
    assert cert.status == Status.ERROR
    assert "Hostname mismatch" in cert.message and HOST in cert.message
    assert "it names other.example.net" in cert.message
    assert "names this host" in cert.fix
    # Looked at anyway: the rest still reported.
    assert results["tls.expiry"].status == Status.OK and results["tls.versions"].status == Status.OK


@pytest.mark.parametrize("kind,reason", [
    ("self-signed", "self-signed certificate"),
    ("untrusted", "unable to get local issuer certificate"),
])
def test_untrusted_chain(pki, line_server, kind, reason):
    port = line_server("imap", kind, implicit=True)
    cert = by_check(check_tls(LOCAL, port, Mode.IMAP_TLS, HOST, pki.ca_file))["tls.certificate"]
    assert cert.status == Status.ERROR and reason in cert.message, cert
    assert "full chain" in cert.fix


def test_no_ca_file_means_the_system_trust_store(smtp_server):
    port, _ = smtp_server()
    cert = by_check(check_tls(LOCAL, port, "smtp-starttls", HOST, None))["tls.certificate"]
    assert cert.status == Status.ERROR and "the system CAs" in cert.message, cert


def test_expired(pki, smtp_server):
    port, _ = smtp_server(cert="expired", implicit=True)
    results = by_check(check_tls(LOCAL, port, Mode.SMTP_TLS, HOST, pki.ca_file))
    assert results["tls.certificate"].status == Status.ERROR
    assert "certificate has expired" in results["tls.certificate"].message
    assert results["tls.expiry"].status == Status.ERROR and "expired on" in results["tls.expiry"].message


def test_not_valid_yet(pki, line_server):
    port = line_server("pop3", "not-yet-valid", implicit=True)
    results = by_check(check_tls(LOCAL, port, Mode.POP3_TLS, HOST, pki.ca_file))
    assert results["tls.certificate"].status == Status.ERROR
    assert "certificate is not yet valid" in results["tls.certificate"].message
    assert "clocks" in results["tls.certificate"].fix
    assert results["tls.expiry"].status == Status.ERROR and "not valid before" in results["tls.expiry"].message


def test_expiring_soon_is_a_warning(pki, smtp_server):
    port, _ = smtp_server(cert="expiring")
    results = by_check(check_tls(LOCAL, port, Mode.SMTP_STARTTLS, HOST, pki.ca_file, min_days=14))
    assert results["tls.certificate"].status == Status.OK
    assert results["tls.expiry"].status == Status.WARN and "in 3 days" in results["tls.expiry"].message
    assert "certbot" in results["tls.expiry"].fix
    assert by_check(check_tls(LOCAL, port, Mode.SMTP_STARTTLS, HOST, pki.ca_file, min_days=2))[
        "tls.expiry"].status == Status.OK


# --- STARTTLS, versions -------------------------------------------------------------------------------------

def test_starttls_not_offered(pki, smtp_server, line_server):
    smtp_port, _ = smtp_server(cert=None)
    imap_port = line_server("imap", starttls=False)
    for port, mode in ((smtp_port, Mode.SMTP_STARTTLS), (imap_port, Mode.IMAP_STARTTLS)):
        [result] = check_tls(LOCAL, port, mode, HOST, pki.ca_file)
        assert (result.check, result.status) == ("tls.starttls", Status.ERROR)
        assert "STARTTLS not offered" in result.message


def test_old_tls_versions_accepted(pki, smtp_server, line_server):
    """Servers that still speak TLS 1.0 and 1.1: an error, if this machine's OpenSSL can offer them."""
    smtp_port, _ = smtp_server(legacy=True)
    imap_port = line_server("imap", legacy=True, implicit=True)
    for port, mode in ((smtp_port, Mode.SMTP_STARTTLS), (imap_port, Mode.IMAP_TLS)):
        versions = by_check(check_tls(LOCAL, port, mode, HOST, pki.ca_file))["tls.versions"]
        if tls.can_offer(ssl.TLSVersion.TLSv1) and tls.can_offer(ssl.TLSVersion.TLSv1_1):
            assert versions.status == Status.ERROR, versions
            assert "accepts TLS 1.0 and TLS 1.1" in versions.message
            assert "ssl_min_protocol" in versions.fix
        else:  # the OpenSSL running the tests cannot: then it must say so
            assert versions.status == Status.WARN and "could not test from here" in versions.message


def test_nothing_newer_than_tls_1_1(pki, line_server):
    port = line_server("imap", old_only=True, implicit=True)
    [result] = check_tls(LOCAL, port, Mode.IMAP_TLS, HOST, pki.ca_file)
    assert (result.check, result.status) == ("tls.versions", Status.ERROR)
    assert "no TLS 1.2 or newer" in result.message and "protocol version" in result.message


def test_old_versions_untestable_from_here_is_a_warning_not_a_pass(pki, line_server, monkeypatch):
    """An OpenSSL that cannot even offer TLS 1.0/1.1 (here: no cipher it could use with them) cannot tell
    whether the server refuses them; that is said, even where the server would accept them."""
    monkeypatch.setattr(tls, "LEGACY_CIPHERS", "ECDHE-ECDSA-AES128-GCM-SHA256")  # a TLS 1.2-only cipher
    assert not tls.can_offer(ssl.TLSVersion.TLSv1_1)
    port = line_server("imap", legacy=True, implicit=True)
    versions = by_check(check_tls(LOCAL, port, Mode.IMAP_TLS, HOST, pki.ca_file))["tls.versions"]
    assert versions.status == Status.WARN, versions
    assert "cannot offer it" in versions.message and "TLS 1.1" in versions.message


def test_old_hellos_unanswered_is_a_timeout(pki, line_server):
    port = line_server("imap", implicit=True, swallow_old_hellos=True)
    results = by_check(check_tls(LOCAL, port, Mode.IMAP_TLS, HOST, pki.ca_file, timeout=SHORT))
    assert results["tls.certificate"].status == Status.OK  # TLS 1.3 goes through
    if tls.can_offer(ssl.TLSVersion.TLSv1):
        assert results["tls.versions"].status == Status.TIMEOUT, results["tls.versions"]
        assert "TLS 1.0, TLS handshake" in results["tls.versions"].message


# --- unreachable, silent, garbled ---------------------------------------------------------------------------

def test_closed_port(pki, closed_port):
    [result] = check_tls(LOCAL, closed_port, Mode.SMTP_STARTTLS, HOST, pki.ca_file)
    assert (result.check, result.status) == ("tls.connect", Status.ERROR)
    assert "port closed or filtered" in result.message and "firewall" in result.fix


@pytest.mark.parametrize("mode,step", [(Mode.SMTP_STARTTLS, "greeting"), (Mode.IMAP_TLS, "TLS handshake")])
def test_server_that_never_answers_times_out(pki, silent_port, mode, step):
    [result] = check_tls(LOCAL, silent_port, mode, HOST, pki.ca_file, timeout=SHORT)
    assert (result.check, result.status) == ("tls.connect", Status.TIMEOUT)
    assert step in result.message


@pytest.mark.parametrize("greeting,expected", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not an SMTP reply"),
    (b"554 5.7.1 go away\r\n", "554 5.7.1 go away"),
])
def test_not_a_willing_smtp_server(pki, line_server, greeting, expected):
    port = line_server("pop3", greeting=greeting)
    [result] = check_tls(LOCAL, port, Mode.SMTP_STARTTLS, HOST, pki.ca_file, timeout=SHORT)
    assert (result.check, result.status) == ("tls.connect", Status.ERROR)
    assert "unexpected answer to greeting" in result.message and expected in result.message


@pytest.mark.parametrize("mode,data,expected", [
    (Mode.SMTP_STARTTLS, b"220 mail.example.org ESMTP\r\n", "connection lost during EHLO: the server closed"),
    (Mode.SMTP_STARTTLS, b"220-" + b"x" * 20000, "unexpected answer to greeting: a reply line longer"),
    (Mode.IMAP_STARTTLS, b"* BYE too busy\r\n", "unexpected answer to greeting: the server answered '* BYE"),
])
def test_servers_that_hang_up_or_ramble(pki, one_shot, mode, data, expected):
    [result] = check_tls(LOCAL, one_shot(data), mode, HOST, pki.ca_file, timeout=SHORT)
    assert (result.check, result.status) == ("tls.connect", Status.ERROR)
    assert expected in result.message, result


def test_ipv6_loopback(pki, line_server):
    """::1 as the address: the name check still uses the host name."""
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    context = pki.context()

    def serve():
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.sendall(b"+OK ready\r\n")
            tls_conn.recv(100)  # QUIT
            tls_conn.sendall(b"+OK bye\r\n")

    threading.Thread(target=serve, daemon=True).start()
    with listener, tls.open_session("::1", listener.getsockname()[1], Mode.POP3_TLS, HOST,
                                    tls.verifying_context(pki.ca_file), timeout=5) as session:
        assert session.greeting.code == "+OK"
