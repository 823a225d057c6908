"""Authentication of real mail: the probe mailbox sends itself a message through submission (587); it is
read back over IMAPS and judged as a receiver would: each DKIM signature (RSA, Ed25519) against its key *as
published in DNS*, SPF for the address it came from, DMARC alignment. Then verify forwards it back in on port
25 from an outside sender, as a list or an alias elsewhere would, and the copy must arrive ARC-sealed by the
host (RFC 8617) with a chain that validates and, when the host does SRS, with the sender rewritten to the SRS
domain: what a receiver of mail we forward relies on. Both copies are deleted afterwards, so verify changes
nothing.
"""

from __future__ import annotations

import email.policy
import re
import time
import uuid
from collections.abc import Callable, Iterable
from email.message import EmailMessage

import dkim
import dkim.util

from mailhost import dkim_keys
from mailhost.dkim_keys import HostKeys
from mailhost.passwords import read_password
from mailhost.spec.values import cut

from ..result import Result, Status, error, ok, timeout, warn
from ..sessions import Mode, SessionFailure, open_session, unverified_context, verifying_context
from .dmarc import dmarc_alignment, parse_dmarc
from .lookup import Lookup, LookupTimeout, despite_caches
from .smtp import PROBE_SENDER
from .spf import evaluate_spf

TIMEOUT = 30.0
JUNK = "Junk"  # where the host's Dovecot files what rspamd marks as spam (roles/dovecot)


def _send(address: str, hostname: str, ca_file: str | None, user: str, password: str, msg: EmailMessage) -> None:
    """Through submission with STARTTLS, as a mail client sends (the certificate checked against the name)."""
    with open_session(address, 587, Mode.SMTP_STARTTLS, hostname, verifying_context(ca_file), TIMEOUT) as smtp:
        smtp.login(user, password)
        smtp.send_message(user, [user], msg.as_bytes(policy=email.policy.SMTP))


# Headers the delivering server put on top (RFC 5321 4.4: Return-Path is added at final delivery and goes when
# the message travels on; Delivered-To would read as a loop): a forwarder sends the message without them.
_DELIVERY_HEADERS = re.compile(rb"\A(?:(?:Return-Path|Delivered-To):[^\n]*\n(?:[ \t][^\n]*\n)*)+", re.IGNORECASE)


def _forward_in(address: str, hostname: str, user: str, raw: bytes) -> None:
    """The probe sent back in on port 25 as a forwarder sends it: as received, its signatures intact, over
    STARTTLS (its certificate is tls.*'s concern), from an outside sender (RFC 2606 .invalid: nobody's domain,
    so no SPF to pass or fail; DMARC goes by the signed From)."""
    with open_session(address, 25, Mode.SMTP_STARTTLS, hostname, unverified_context(), TIMEOUT) as smtp:
        smtp.send_message(PROBE_SENDER, [user], _DELIVERY_HEADERS.sub(b"", raw))


def _fetch_and_delete(address: str, hostname: str, ca_file: str | None, user: str, password: str,
                      subject: str, mailboxes: tuple[str, ...] = ("INBOX",)) -> tuple[bytes, str] | None:
    """The probe read back over IMAPS from the first of `mailboxes` that has it, then deleted: (message,
    mailbox), or None if it has not arrived within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    with open_session(address, 993, Mode.IMAP_TLS, hostname, verifying_context(ca_file), TIMEOUT) as imap:
        imap.login(user, password)
        while True:
            for mailbox in mailboxes:
                found = imap.search_subject(mailbox, subject)
                if found:
                    raw = imap.fetch(found[-1])
                    imap.delete(found)
                    return raw, mailbox
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def check_probe(target, address: str, lookup: Lookup, fresh: Lookup | None = None,
                host_dkim: HostKeys | None = None,
                before_port_25: Callable[[], object] = lambda: None) -> Iterable[Result]:
    """The probe's round trip and its authentication; its DKIM signatures must be by the keys the host signs
    with (`host_dkim`: during a key rotation, not yet the spec's), else by the spec's. The copy forwarded back
    in on port 25 goes once `before_port_25` returns (verify's first greeting through postscreen's pause)."""
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
        fetched = _fetch_and_delete(address, spec.hostname, target.ca_file, user, password, subject)
    except SessionFailure as failure:
        yield _failed("mail.probe", user, "the probe", failure)
        return
    except OSError as exc:  # the password file
        yield error("mail.probe", user, f"the probe mailbox's password could not be read: {exc.strerror}",
                    "check its password_file")
        return
    if fetched is None:
        yield error("mail.probe", user, f"the probe was accepted but not delivered within {TIMEOUT:.0f}s",
                    "check `journalctl -u postfix@- -u dovecot` on the host")
        return
    raw = fetched[0]
    yield ok("mail.probe", user, "a probe sent through submission (587) arrived over IMAPS and was deleted")
    keys = (spec.dkim_keys(next(d for d in spec.domains if d.name == domain)) if host_dkim is None else
            sorted((s, a) for d, s, a in host_dkim.signing if d == domain))
    yield from despite_caches(lambda lk: _judge(raw, domain, keys, address, lk), lookup, fresh)
    before_port_25()
    try:
        _forward_in(address, spec.hostname, user, raw)
        # Where verify runs from (a laptop's address on a blocklist, say) may make the copy look like spam: it
        # is judged wherever it was filed.
        forwarded = _fetch_and_delete(address, spec.hostname, target.ca_file, user, password, subject,
                                      ("INBOX", JUNK))
    except SessionFailure as failure:
        yield _failed("mail.arc", domain, "the probe forwarded back in on port 25", failure)
        return
    if forwarded is None:
        yield error("mail.arc", domain, f"the probe forwarded back in on port 25 was not delivered within "
                                        f"{TIMEOUT:.0f}s", "check `journalctl -u postfix@- -u rspamd` on the host")
        return
    copy, mailbox = forwarded
    results = despite_caches(lambda lk: [judge_arc(copy, domain, _dns_txt(lk))], lookup, fresh)
    if spec.srs_domain:
        results.append(judge_srs(copy, PROBE_SENDER, spec.srs_domain))
    for result in results:
        if mailbox == JUNK and result.status is Status.OK:
            result = warn(result.check, result.subject, f"{result.message}; rspamd filed it in Junk",
                          "if verify ran from an address on a blocklist, run it from elsewhere; else rspamd's log "
                          "(`journalctl -u rspamd` on the host) says which symbols scored")
        yield result


def judge_srs(raw: bytes, sender: str, srs_domain: str) -> Result:
    """The mail.srs result for mail from `sender` that reached a mailbox here: the envelope sender it was delivered
    with (Return-Path) is `sender` rewritten by SRS to `srs_domain`, as it would leave if an alias forwarded it
    outside, so SPF passes for it at the next receiver and its bounces come back here."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    path = str(message.get("Return-Path", "")).strip().strip("<>")
    local, _, domain = path.rpartition("@")
    sender_local, sender_domain = sender.rsplit("@", 1)
    if local.upper().startswith("SRS0=") and local.endswith(f"={sender_domain}={sender_local}") \
            and domain.lower() == srs_domain:
        return ok("mail.srs", srs_domain, f"the forwarded probe from {sender} went on as {local[:12]}...@{domain} "
                                          "(SRS)")
    return error("mail.srs", srs_domain, f"the forwarded probe from {sender} went on with envelope sender "
                                         f"<{cut(path, 100)}>, not an SRS address of {srs_domain}",
                 "check `systemctl status postsrsd` and Postfix's sender_canonical_maps; run the deploy again")


def _failed(check: str, subject: str, what: str, failure: SessionFailure) -> Result:
    if isinstance(failure.cause, TimeoutError):
        return timeout(check, subject, f"sending or reading {what} ({failure.step})")
    return error(check, subject, f"{what} could not be sent or read: {failure}",
                 "see the tls.* and smtp.* results; check the mailbox's password")


def _dns_txt(lookup: Lookup):
    """dkimpy's way to ask DNS for a key record, answered through verify's lookup."""
    def dns_txt(name: bytes, timeout: float = 5) -> bytes | None:
        answers = lookup(name.decode().rstrip("."), "TXT")
        return answers[0].encode() if answers else None
    return dns_txt


def judge_arc(raw: bytes, domain: str, dns_txt) -> Result:
    """The mail.arc result for mail that reached `domain` from outside: one ARC set, sealed by `domain`, whose
    chain validates with the key `dns_txt` finds (RFC 8617 5.2). A forwarded message's receiver relies on it
    for the SPF/DKIM/DMARC results the host saw before forwarding changed the sender."""
    seals = [dkim.util.parse_tag_value(v) for n, v in dkim.DKIM(raw).headers if n.lower() == b"arc-seal"]
    if not seals:
        return error("mail.arc", domain, "the probe forwarded back in on port 25 arrived without an ARC seal",
                     "run the deploy again (rspamd's local.d/arc.conf seals inbound mail for our domains)")
    sealers = sorted({s.get(b"d", b"?").decode() for s in seals})
    if sealers != [domain]:
        return error("mail.arc", domain, f"the forwarded probe is ARC-sealed by {', '.join(sealers)}, not {domain}",
                     "run the deploy again (rspamd's local.d/arc.conf)")
    try:
        cv, _, reason = dkim.arc_verify(raw, dnsfunc=dns_txt)
    except LookupTimeout:
        return timeout("mail.arc", domain, "the key of the ARC seal in DNS")
    except dkim.DKIMException as exc:  # a malformed set
        cv, reason = dkim.CV_Fail, str(exc)
    if cv != dkim.CV_Pass:
        return error("mail.arc", domain, f"the forwarded probe's ARC chain does not validate ({cv.decode()}: "
                                         f"{reason})", "publish the host's DKIM keys (run the deploy)")
    return ok("mail.arc", domain, f"the probe forwarded back in on port 25 arrived ARC-sealed by {domain}, chain "
                                  f"valid (i={len(seals)})")


ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}  # key type -> the signature's a= tag


def judge_signatures(raw: bytes, domain: str, keys: list[tuple[str, str]], dns_txt) -> tuple[bool, Result]:
    """Whether a signature of `domain` verifies, and the mail.dkim result: the message must carry a signature by
    each of the domain's keys ((selector, algorithm)) and each must verify with the key `dns_txt` finds, as
    every receiver checks the signatures it knows (RFC 6376 6.1; RFC 8463)."""
    message = dkim.DKIM(raw)
    signatures = [(i, dkim.util.parse_tag_value(value)) for i, (name, value) in
                  enumerate(h for h in message.headers if h[0].lower() == b"dkim-signature")]
    verdicts: dict[tuple[str, str], bool] = {}
    for i, tags in signatures:
        if tags.get(b"d", b"").decode().lower() != domain:
            continue
        algorithm = next((k for k, a in ALGORITHMS.items() if a == tags.get(b"a")), tags.get(b"a", b"?").decode())
        verdicts[(tags.get(b"s", b"").decode(), algorithm)] = bool(dkim.DKIM(raw).verify(idx=i, dnsfunc=dns_txt))
    named = lambda key: dkim_keys.named((domain, *key)).removeprefix(f"{domain} ")  # noqa: E731
    missing = [named(k) for k in keys if k not in verdicts]
    failing = [named(k) for k, passed in verdicts.items() if not passed]
    passing = any(verdicts.values())
    if not signatures:
        return False, error("mail.dkim", domain, "the probe is not DKIM-signed",
                            "check rspamd on the host (host.services) and its dkim_signing.conf")
    if missing or failing:
        problems = "; ".join(filter(None, [missing and "no signature by " + ", ".join(missing),
                                           failing and "does not verify with the key in DNS: " + ", ".join(failing)]))
        return passing, error("mail.dkim", domain, f"the probe's DKIM signatures: {problems}",
                              "publish the host's keys (run the deploy or `mailhost dns apply`)" if failing else
                              "run the deploy again (rspamd signs with every key of the domain)")
    return passing, ok("mail.dkim", domain, "the probe's DKIM signatures (" + ", ".join(named(k) for k in verdicts)
                       + ") verify with the keys published in DNS")


def _judge(raw: bytes, domain: str, keys: list[tuple[str, str]], address: str, lookup) -> Iterable[Result]:
    """DKIM with the keys from DNS, SPF for the sending address, DMARC alignment of both."""
    try:
        dkim_pass, result = judge_signatures(raw, domain, keys, _dns_txt(lookup))
    except LookupTimeout:
        yield timeout("mail.dkim", domain, "the DKIM keys in DNS")
        return
    yield result
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
