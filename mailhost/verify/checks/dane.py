"""DANE for mail to us (RFC 7672), as a validating sender sees it: the TLSA records of port 25, validated
from the trust anchor, must match the certificate each of the host's addresses serves there. A TLSA record
that matches nothing makes DANE senders hold their mail (they never fall back to clear text)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import dns.exception
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import Certificate

from mailhost import dnssec
from mailhost.dns.records import tlsa_value
from mailhost.verify.sessions import Mode, SessionFailure, open_session, unverified_context

from ..result import Result, error, ok, timeout, warn

CHECK = "dane.tlsa"
DIGESTS = {0: lambda data: data, 1: lambda data: hashlib.sha256(data).digest(),
           2: lambda data: hashlib.sha512(data).digest()}


def tlsa_name(hostname: str) -> str:
    return f"_25._tcp.{hostname}"


def spki(cert: Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def matches(rd, cert: Certificate) -> bool:
    """Does one TLSA record (usage 1 or 3: the server's own certificate) match `cert`?"""
    if rd.usage not in (1, 3) or rd.selector not in (0, 1) or rd.mtype not in DIGESTS:
        return False
    data = cert.public_bytes(serialization.Encoding.DER) if rd.selector == 0 else spki(cert)
    return DIGESTS[rd.mtype](data) == rd.cert


def served_certificate(address: str, hostname: str, timeout: float = 10.0) -> Certificate:
    """The certificate port 25 presents after STARTTLS, unverified (raises SessionFailure)."""
    with open_session(address, 25, Mode.SMTP_STARTTLS, hostname, unverified_context(), timeout,
                      handshake_only=True) as session:
        return session.certificate()


def check_tlsa(hostname: str, addresses: Iterable[str], anchor: dnssec.Anchor, query: dnssec.Query,
               connect_timeout: float = 10.0) -> Iterable[Result]:
    """The TLSA RRset of port 25, validated, against the certificate served on every address."""
    name = tlsa_name(hostname)
    try:
        rrset = dnssec.validate_chain(name, "TLSA", anchor, query)
    except dns.exception.Timeout:
        yield timeout(CHECK, name, f"{name} TLSA")
        return
    except dnssec.ChainError as exc:
        rrset, problem = None, str(exc)
    for address in addresses:
        subject = f"{hostname}:25 ({address})"
        try:
            cert = served_certificate(address, hostname, connect_timeout)
        except SessionFailure as failure:
            yield failure.result(CHECK, subject)
            continue
        expected = f"{name}. IN TLSA {tlsa_value(spki(cert))}"
        if rrset is None:
            yield error(CHECK, subject, f"no DNSSEC-validated TLSA record: {problem}",
                        f"publish {expected} in a signed zone (the deploy does)")
        elif any(matches(rd, cert) for rd in rrset):
            shown = sorted(rd.to_text()[:22] + "…" for rd in rrset)  # (an RRset comes in any order)
            yield ok(CHECK, subject, f"TLSA {' / '.join(shown)}: one matches the certificate served, "
                                     "DNSSEC-validated")
        elif all(rd.usage in (0, 2) for rd in rrset):
            yield warn(CHECK, subject, "the TLSA records name a CA (usage 0/2), which is not checked here",
                       f"publish {expected} as well")
        else:
            yield error(CHECK, subject, f"no TLSA record matches the certificate served: DANE senders hold "
                                        f"their mail (published: {', '.join(sorted(rd.to_text() for rd in rrset))})",
                        f"publish {expected} (the deploy does; wait for the old record's TTL before a new key)")

