"""Authentication of real mail: the probe mailbox sends itself a message through submission (587); it is
read back over IMAPS and judged as a receiver would: DKIM against the key *as published in DNS*, SPF for
the address it came from, DMARC alignment. The probe is deleted afterwards, so verify changes nothing.
"""

from __future__ import annotations

import email.policy
import time
import uuid
from collections.abc import Iterable
from email.message import EmailMessage

import dkim

from mailhost.passwords import read_password

from ..result import Result, error, ok, timeout, warn
from ..sessions import Mode, SessionFailure, open_session, verifying_context
from .dmarc import dmarc_alignment, parse_dmarc
from .lookup import Lookup, LookupTimeout, despite_caches
from .spf import evaluate_spf

TIMEOUT = 30.0


def _send(address: str, hostname: str, ca_file: str | None, user: str, password: str, msg: EmailMessage) -> None:
    """Through submission with STARTTLS, as a mail client sends (the certificate checked against the name)."""
    with open_session(address, 587, Mode.SMTP_STARTTLS, hostname, verifying_context(ca_file), TIMEOUT) as smtp:
        smtp.login(user, password)
        smtp.send_message(user, [user], msg.as_bytes(policy=email.policy.SMTP))


def _fetch_and_delete(address: str, hostname: str, ca_file: str | None, user: str, password: str,
                      subject: str) -> bytes | None:
    """The probe read back over IMAPS, then deleted; None if it has not arrived within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    with open_session(address, 993, Mode.IMAP_TLS, hostname, verifying_context(ca_file), TIMEOUT) as imap:
        imap.login(user, password)
        while True:
            found = imap.search_subject("INBOX", subject)
            if found:
                raw = imap.fetch(found[-1])
                imap.delete(found)
                return raw
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def check_probe(target, address: str, lookup: Lookup, fresh: Lookup | None = None) -> Iterable[Result]:
    spec = target.spec
    box = spec.probe_mailbox
    if box is None:
        yield warn("mail.probe", spec.hostname, "no probe: no mailbox has its password in password_env or "
                                                "password_file", "set verify.probe_mailbox to such a mailbox")
        return
    user, domain = box.address, box.address.split("@")[1]
    subject = f"mailhost verify probe {uuid.uuid4().hex}"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = user, user, subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{spec.hostname}>"
    msg.set_content("A probe of `mailhost verify`; it deletes it again.\n")
    try:
        password = read_password(box, target.base_dir)
        _send(address, spec.hostname, target.ca_file, user, password, msg)
        raw = _fetch_and_delete(address, spec.hostname, target.ca_file, user, password, subject)
    except SessionFailure as failure:
        if isinstance(failure.cause, TimeoutError):
            yield timeout("mail.probe", user, f"sending or reading the probe ({failure.step})")
        else:
            yield error("mail.probe", user, f"the probe could not be sent or read: {failure}",
                        "see the tls.* and smtp.* results; check the mailbox's password")
        return
    except OSError as exc:  # the password file
        yield error("mail.probe", user, f"the probe mailbox's password could not be read: {exc.strerror}",
                    "check its password_file")
        return
    if raw is None:
        yield error("mail.probe", user, f"the probe was accepted but not delivered within {TIMEOUT:.0f}s",
                    "check `journalctl -u postfix@- -u dovecot` on the host")
        return
    yield ok("mail.probe", user, "a probe sent through submission (587) arrived over IMAPS and was deleted")
    yield from despite_caches(lambda lk: _judge(raw, domain, address, lk), lookup, fresh)


def _judge(raw: bytes, domain: str, address: str, lookup) -> Iterable[Result]:
    """DKIM with the key from DNS, SPF for the sending address, DMARC alignment of both."""
    published: list[str] = []

    def dns_txt(name: bytes, timeout: float = 5) -> bytes | None:
        answers = lookup(name.decode().rstrip("."), "TXT")
        published.extend(answers)
        return answers[0].encode() if answers else None

    signed = b"DKIM-Signature" in raw
    try:
        dkim_pass = signed and dkim.verify(raw, dnsfunc=dns_txt)
    except LookupTimeout:
        yield timeout("mail.dkim", domain, "the DKIM key in DNS")
        return
    if dkim_pass:
        yield ok("mail.dkim", domain, "the probe's DKIM signature verifies with the key published in DNS")
    elif not signed:
        yield error("mail.dkim", domain, "the probe is not DKIM-signed", "check OpenDKIM on the host "
                                                                         "(host.services) and its signing table")
    else:
        yield error("mail.dkim", domain, "the probe's DKIM signature does not verify with the key in DNS "
                                         f"({'no key published' if not published else 'a different key'})",
                    "publish the host's key (run the deploy or `mailhost dns apply`)")
    try:
        spf = evaluate_spf(domain, address, lookup, sender=f"postmaster@{domain}")
        records = [r for r in lookup(f"_dmarc.{domain}", "TXT") if r.startswith("v=DMARC1")]
    except LookupTimeout:
        yield timeout("mail.spf", domain, "SPF/DMARC records")
        return
    if spf.result == "pass":
        yield ok("mail.spf", domain, f"SPF passes for the host's address {address}")
    else:
        yield error("mail.spf", domain, f"SPF gives {spf.result} for the host's address {address}",
                    f"authorise {address} in the SPF record of {domain}")
    if not records:
        yield error("mail.dmarc", domain, "no DMARC record to evaluate", "publish _dmarc (see dns.dmarc)")
        return
    verdict = dmarc_alignment(domain, domain, spf.result, [domain] if dkim_pass else [], parse_dmarc(records[0]))
    if verdict == "pass":
        yield ok("mail.dmarc", domain, "DMARC passes (aligned " + ("DKIM and SPF" if dkim_pass else "SPF") + ")")
    else:
        yield error("mail.dmarc", domain, "DMARC fails: neither DKIM nor SPF passes aligned with the From domain",
                    "fix mail.dkim / mail.spf above")
