"""SMTP policy seen from outside, as a stranger on the internet: the names the server gives, no relaying,
AUTH only where and when it belongs, and whether the host's addresses are on DNS blocklists.

The probes act like anyone could: no login, and any certificate taken. A relaying stranger does not check
certificates, and whether the certificate is right is `checks.tls`' question: here a bad one must neither hide
an open relay nor turn into one error per check. (So the `ca_file` some checks take is not used to judge;
it keeps their arguments those of the TLS check.)
They never send DATA: the answer to RCPT TO is the answer, and RSET + QUIT end every probe.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace

from mailhost.verify.checks.lookup import Lookup, LookupTimeout
from mailhost.verify.sessions import Mode, Reply, SessionFailure, SmtpSession, open_session, unverified_context
# `timeout` is a parameter here (seconds), so the Result helper goes by another name.
from mailhost.verify.result import Result, error, ok, warn
from mailhost.verify.result import timeout as timed_out

PROBE_SENDER = "probe@outside.invalid"
FOREIGN_RCPT = "relay-test@example.invalid"  # RFC 2606: can never be a real mailbox, should relaying happen


def _smtp(address: str, hostname: str, port: int, mode: Mode | str | None, tls: bool, timeout: float) -> SmtpSession:
    """An SMTP session the way the port speaks (`mode` None: implicit TLS on 465, else STARTTLS); a STARTTLS
    port stays in clear unless `tls`."""
    mode = (Mode.SMTP_TLS if port == 465 else Mode.SMTP_STARTTLS) if mode is None else Mode(mode)
    if mode.protocol != "smtp":
        raise ValueError(f"{mode.value} is not SMTP")
    context = unverified_context() if tls or mode.implicit else None
    session = open_session(address, port, mode, hostname, context, timeout)
    assert isinstance(session, SmtpSession)
    return session


def _other_name(reply: Reply, hostname: str) -> str | None:
    """The name a greeting or EHLO reply gives (its first word, RFC 5321 4.2), or None when it is `hostname`."""
    words = reply.lines[0].split() if reply.lines else []
    named = words[0] if words else ""
    return None if named.lower().rstrip(".") == hostname.lower().rstrip(".") else named


def check_banner(address: str, hostname: str, port: int = 25, mode: Mode | str | None = None,
                 timeout: float = 10.0) -> list[Result]:
    """The 220 greeting and the EHLO reply name the host: receivers and anyone reading logs match that name
    against the host's reverse DNS and certificate, and a different one points at a misconfigured or a
    different machine (a NAT, a proxy, another service on the port)."""
    subject = f"{hostname}:{port}"
    try:
        with _smtp(address, hostname, port, mode, False, timeout) as session:
            greeting, ehlo = session.greeting, session.ehlo_reply
    except SessionFailure as failure:
        return [failure.result("smtp.banner", subject)]
    wrong = [f"{what} names {named!r} ({reply})" for what, reply in (("the greeting", greeting), ("EHLO", ehlo))
             if (named := _other_name(reply, hostname)) is not None]
    if wrong:
        return [error("smtp.banner", subject, f"{'; '.join(wrong)}, not {hostname}",
                      f"Postfix: myhostname = {hostname} and smtpd_banner = $myhostname ESMTP")]
    return [ok("smtp.banner", subject, f"greets and answers EHLO as {hostname}")]


def _envelope(session: SmtpSession, sender: str, rcpt: str) -> tuple[str, Reply]:
    """MAIL FROM + RCPT TO without DATA, then RSET. Returns where the server stopped ("MAIL FROM",
    "RCPT TO"; "accepted" if it took the recipient) and its last reply."""
    try:
        reply = session.command(f"MAIL FROM:<{sender}>", "MAIL FROM")
        if not reply.code.startswith("2"):
            return "MAIL FROM", reply
        reply = session.command(f"RCPT TO:<{rcpt}>", "RCPT TO")
        return ("accepted" if reply.code.startswith("2") else "RCPT TO"), reply
    finally:
        if session.usable:
            try:
                session.command("RSET")
            except SessionFailure:
                pass


def check_open_relay(address: str, hostname: str, ca_file: str | None = None, foreign_rcpt: str = FOREIGN_RCPT,
                     sender: str = PROBE_SENDER, port: int = 25, timeout: float = 10.0) -> list[Result]:
    """Would the server pass a stranger's mail on to another stranger? Asked without AUTH, once in clear and
    once after STARTTLS (a server can be configured differently for each): one "smtp.relay" Result each.

    An open relay is found and abused within hours; its address lands on every blocklist."""
    subject = f"{hostname}:{port}"
    results = []
    for how, tls in (("in clear", False), ("after STARTTLS", True)):
        try:
            with _smtp(address, hostname, port, Mode.SMTP_STARTTLS, tls, timeout) as session:
                stopped, reply = _envelope(session, sender, foreign_rcpt)
        except SessionFailure as failure:
            result = failure.result("smtp.relay", subject)
            results.append(replace(result, message=f"{how}: {result.message}"))
            continue
        results.append(_relay_verdict(how, stopped, reply, sender, foreign_rcpt, subject))
    return results


def _relay_verdict(how: str, stopped: str, reply: Reply, sender: str, rcpt: str, subject: str) -> Result:
    if stopped == "accepted":
        return error("smtp.relay", subject, f"open relay {how}: took RCPT TO:<{rcpt}> from a stranger ({reply})",
                     "Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
                     "reject_unauth_destination, with mynetworks the host itself only")
    if reply.code.startswith("4"):
        return warn("smtp.relay", subject, f"{how}: {stopped} only deferred ({reply}); that does not show it "
                    "would never relay", "see the server's log for why it deferred, then verify again")
    if stopped == "RCPT TO":
        return ok("smtp.relay", subject, f"{how}: relaying to {rcpt} refused ({reply})")
    if reply.code == "530":  # STARTTLS or AUTH first (RFC 3207, RFC 4954): no mail at all in this session
        return ok("smtp.relay", subject, f"{how}: takes no mail before TLS or login ({reply})")
    return warn("smtp.relay", subject, f"{how}: the sender {sender} was refused ({reply}), so relaying was not "
                "tried", "verify again with a sender address the server takes")


def check_auth_before_tls(address: str, hostname: str, port: int = 25, mx: bool | None = None,
                          timeout: float = 10.0) -> list[Result]:
    """AUTH only after STARTTLS, and on the MX port (`mx` None: port 25) not at all ("smtp.auth-before-tls").

    Offered in clear, AUTH lets a client send its password in clear, and lets anyone in the path strip
    STARTTLS to make it. Port 25 is where other servers deliver mail to us: they never log in, users submit
    on 587/465 (RFC 6409, RFC 8314). AUTH on 25 only invites password guessing from every bot."""
    subject = f"{hostname}:{port}"
    mx = port == 25 if mx is None else mx
    fix = ("Postfix: smtpd_sasl_auth_enable = no in main.cf, yes only for submission in master.cf"
           if mx else "Postfix: smtpd_tls_auth_only = yes")
    try:
        with _smtp(address, hostname, port, Mode.SMTP_STARTTLS, False, timeout) as session:
            offered, starttls = session.capabilities.get("AUTH"), "STARTTLS" in session.capabilities
        if offered is not None:
            return [error("smtp.auth-before-tls", subject, f"offers AUTH {offered} before STARTTLS", fix)]
        if not mx:
            return [ok("smtp.auth-before-tls", subject, "no AUTH before STARTTLS")]
        if not starttls:  # what was offered in clear is all there is
            return [ok("smtp.auth-before-tls", subject, "no AUTH offered (and no STARTTLS)")]
        with _smtp(address, hostname, port, Mode.SMTP_STARTTLS, True, timeout) as session:
            offered = session.capabilities.get("AUTH")
    except SessionFailure as failure:
        return [failure.result("smtp.auth-before-tls", subject)]
    if offered is not None:
        return [error("smtp.auth-before-tls", subject, f"offers AUTH {offered} after STARTTLS on the MX port, where "
                      "only other servers should talk to it", fix)]
    return [ok("smtp.auth-before-tls", subject, "no AUTH on the MX port, before or after STARTTLS")]


def check_submission_requires_auth(address: str, hostname: str, ca_file: str | None = None, port: int = 587,
                                   mode: Mode | str | None = None, foreign_rcpt: str = FOREIGN_RCPT,
                                   sender: str = PROBE_SENDER, timeout: float = 10.0) -> list[Result]:
    """Submission (587 after STARTTLS, 465 implicit; `mode` None: by the port): AUTH is offered, and without it
    no mail is taken ("smtp.submission-auth"). A submission port that takes mail without login is an open relay."""
    subject = f"{hostname}:{port}"
    try:
        with _smtp(address, hostname, port, mode, True, timeout) as session:
            mechanisms = session.capabilities.get("AUTH")
            stopped, reply = _envelope(session, sender, foreign_rcpt)
    except SessionFailure as failure:
        return [failure.result("smtp.submission-auth", subject)]
    problems = []
    if mechanisms is None:
        problems.append("no AUTH offered after TLS, so users cannot log in to send")
    if stopped == "accepted":
        problems.append(f"took RCPT TO:<{foreign_rcpt}> without login ({reply}): an open relay")
    if problems:
        return [error("smtp.submission-auth", subject, "; ".join(problems),
                      "Postfix master.cf, submission/submissions: -o smtpd_sasl_auth_enable=yes "
                      "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject")]
    if reply.code.startswith("4"):
        return [warn("smtp.submission-auth", subject, f"offers AUTH {mechanisms}; mail without login only deferred "
                     f"at {stopped} ({reply})", "see the server's log for why it deferred, then verify again")]
    return [ok("smtp.submission-auth", subject,
               f"offers AUTH {mechanisms}; without login, {stopped} refused ({reply})")]


# --- DNS blocklists ------------------------------------------------------------------------------------------

def dnsbl_name(address: str, zone: str) -> str:
    """Where a list answers for `address`: IPv4 octets or IPv6 nibbles reversed, under the list's zone."""
    ip = ipaddress.ip_address(address)
    reverse = ip.reverse_pointer.removesuffix(".in-addr.arpa" if ip.version == 4 else ".ip6.arpa")
    return f"{reverse}.{zone.strip('.')}"


def _listing(answer: str) -> bool | None:
    """True for a listing (127.0.0.0/8), False for a list's own error code (127.255.255.0/24: "you query
    through a public resolver", "too many queries"), None for anything else (a dead list answering all)."""
    try:
        ip = ipaddress.ip_address(answer)
    except ValueError:
        return None
    if ip in ipaddress.ip_network("127.255.255.0/24"):
        return False
    return True if ip in ipaddress.ip_network("127.0.0.0/8") else None


def check_dnsbl(addresses: Iterable[str], lists: Iterable[str], lookup: Lookup) -> list[Result]:
    """Is any of the host's addresses on a DNS blocklist ("reputation.dnsbl", one Result per address)?
    Receivers that use the list refuse mail from a listed address.

    `lookup` as in `checks.lookup`: [] for a name that does not exist, LookupTimeout for no usable answer.
    Lists answer only some resolvers (Spamhaus refuses big public ones): give the one the host uses."""
    lists = list(lists)
    return [_dnsbl(address, lists, lookup) for address in addresses] if lists else []


def _dnsbl(address: str, lists: list[str], lookup: Lookup) -> Result:
    listed, unanswered, unclear = [], [], []
    for zone in lists:
        name = dnsbl_name(address, zone)
        try:
            answers = lookup(name, "A")
        except LookupTimeout:
            unanswered.append(zone)
            continue
        if not answers:
            continue
        if any(_listing(a) for a in answers):
            try:
                reason = "; ".join(lookup(name, "TXT"))
            except LookupTimeout:
                reason = ""
            listed.append(f"{zone} ({', '.join(answers)}{': ' + reason if reason else ''})")
        elif any(_listing(a) is False for a in answers):
            unclear.append(f"{zone} refused to answer this resolver ({', '.join(answers)})")
        else:
            unclear.append(f"{zone} answered {', '.join(answers)}, not a listing (is the list still alive?)")
    if listed:
        return error("reputation.dnsbl", address, f"listed on {'; '.join(listed)}",
                     "find out why (an open relay, a compromised account, the address's previous user) and fix "
                     "that first; then ask each list for removal (the reason usually links the page)")
    if unanswered:
        return timed_out("reputation.dnsbl", address, f"blocklist lookups at {', '.join(unanswered)}")
    if unclear:
        return warn("reputation.dnsbl", address, f"could not tell: {'; '.join(unclear)}",
                    "query the lists through the resolver the host itself uses")
    return ok("reputation.dnsbl", address, f"not listed on {', '.join(lists)}")


def check_vrfy_expn(address: str, hostname: str, timeout: float = 10.0) -> list[Result]:
    """VRFY and EXPN would tell a stranger which addresses exist, and where a list goes (address harvesting):
    both refused ("smtp.vrfy")."""
    subject = f"{hostname}:25"
    try:
        with _smtp(address, hostname, 25, Mode.SMTP_STARTTLS, False, timeout) as session:
            replies = {verb: session.command(f"{verb} postmaster", verb) for verb in ("VRFY", "EXPN")}
    except SessionFailure as failure:
        return [failure.result("smtp.vrfy", subject)]
    # Refused is 5xx (Postfix: 502 when disabled). Any 2xx is an answer: with VRFY on, Postfix says 252 for an
    # address that exists and 550 for one that does not.
    told = [f"{verb} ({reply})" for verb, reply in replies.items() if reply.code.startswith("2")]
    if told:
        return [error("smtp.vrfy", subject, f"answers {' and '.join(told)} to a stranger (not refused)",
                      "Postfix: disable_vrfy_command = yes (EXPN it never offers)")]
    return [ok("smtp.vrfy", subject, "VRFY and EXPN refused (" + "; ".join(f"{v} {r.code}" for v, r in
                                                                        replies.items()) + ")")]


def check_role_addresses(address: str, hostname: str, domains: Iterable[str], sender: str = PROBE_SENDER,
                         timeout: float = 10.0) -> list[Result]:
    """postmaster@ (RFC 5321 4.5.1) and abuse@ (RFC 2142) of every domain take mail from a stranger: where
    other servers send bounces and complaints ("smtp.role-addresses", one per domain). RCPT only, no DATA."""
    results = []
    try:
        with _smtp(address, hostname, 25, Mode.SMTP_STARTTLS, True, timeout) as session:
            for domain in domains:
                refused = []
                for local in ("postmaster", "abuse"):
                    stopped, reply = _envelope(session, sender, f"{local}@{domain}")
                    if stopped != "accepted":
                        refused.append(f"{local}@ ({stopped}: {reply})")
                results.append(error("smtp.role-addresses", domain, "refused: " + "; ".join(refused),
                                     "route them to a mailbox (an alias; mailhost adds one where the spec has none)")
                               if refused else ok("smtp.role-addresses", domain, "postmaster@ and abuse@ take mail"))
    except SessionFailure as failure:
        results.append(failure.result("smtp.role-addresses", hostname))
    return results
