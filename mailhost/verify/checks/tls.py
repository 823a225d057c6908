"""TLS on the mail ports, seen from outside: the chain and the name, the expiry, the protocol versions.

A sending server or a mail client connects to the host's address but checks the certificate against the
host *name*, so every check takes both: `address` to connect to, `hostname` for SNI and the name check.

The conversations themselves (connect, greet, STARTTLS) are `mailhost.verify.sessions`'.
"""

from __future__ import annotations

import datetime as dt
import ssl
import warnings
from dataclasses import dataclass

from cryptography import x509

from mailhost.services import SERVICES, services_on
from mailhost.verify.result import Result, error, ok, warn
# `timeout` is a parameter here (seconds), so the Result helper goes by another name.
from mailhost.verify.result import timeout as timed_out
from mailhost.verify.sessions import (HANDSHAKE, Mode, SessionFailure, StartTLSNotOffered, describe, open_session,
                                      unverified_context, verify_fix, verifying_context)



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
              min_days: int = 14, timeout: float = 10.0, versions: bool = True) -> list[Result]:
    """The certificate (chain, name), its expiry and the TLS versions of one port.

    `address` is what to connect to; `hostname` is what the certificate must name (and the SNI).
    Results: "tls.connect", "tls.starttls" or "tls.versions" (no TLS 1.2+) alone when no TLS session comes
    about; otherwise "tls.certificate", "tls.expiry" and (with `versions`: the old versions refused, which takes
    two more handshakes) "tls.versions"."""
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
    return [_chain(cert, rejected, hostname, ca_file, subject), _expiry(cert, min_days, subject)] + (
        [_versions(address, port, mode, hostname, timeout, f"{version} ({cipher})", subject)] if versions else [])


def _names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _issuer(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()


def _chain(cert: x509.Certificate, rejected: ssl.SSLCertVerificationError | None, hostname: str,
           ca_file: str | None, subject: str) -> Result:
    if rejected is None:
        return ok("tls.certificate", subject, f"valid for {hostname}, issued by {_issuer(cert)}")
    message = f"certificate not accepted: {describe(rejected)}"
    if rejected.verify_code == 62:
        message += f" (it names {', '.join(_names(cert)) or 'nothing'})"
    elif rejected.verify_code in (2, 18, 19, 20, 21):  # issuer unknown, self-signed
        message += f" (issued by {_issuer(cert)}; trusted here: {ca_file or 'the system CAs'})"
    return error("tls.certificate", subject, message, verify_fix(rejected.verify_code))


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
