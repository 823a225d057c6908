"""MTA-STS (RFC 8461) and client autoconfig as a sender and a mail client see them: the `_mta-sts` record, the
policy fetched over HTTPS with a valid certificate for mta-sts.<domain>, covering our MX, in the spec's
mode, its `id` the one the policy has now; and the SRV records and autoconfig file a client would follow."""

from __future__ import annotations

import re
from collections.abc import Iterable
from xml.etree import ElementTree

from mailhost import web
from mailhost.verify.sessions import Mode, SessionFailure, open_session, verifying_context

from ..result import Result, error, ok, timeout
from .lookup import Lookup, LookupTimeout

RECORD = re.compile(r"v=STSv1;\s*id=([A-Za-z0-9]{1,32})\s*(?:;.*)?")  # RFC 8461 3.1: fields end at ";"


def fetch(address: str, name: str, path: str, ca_file: str | None, connect_timeout: float = 10.0):
    """GET https://<name><path> from `address`, the certificate checked for `name`."""
    with open_session(address, 443, Mode.HTTPS_TLS, name, verifying_context(ca_file), connect_timeout) as session:
        return session.get(path)


def parse_policy(text: str) -> dict[str, list[str]]:
    """RFC 8461 3.2: `key: value` lines (CRLF or LF); `mx` may repeat."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    return fields


def covers(patterns: Iterable[str], hostname: str) -> bool:
    """Does an `mx` pattern match the host name (`*.example.org` matches one leftmost label)? Names compare
    case-insensitively, and only a leading `*.` is a wildcard (RFC 8461 4.1)."""
    hostname = hostname.lower()
    for pattern in (p.lower() for p in patterns):
        if pattern.startswith("*."):
            if "." in hostname and hostname.split(".", 1)[1] == pattern[2:]:
                return True
        elif pattern == hostname:
            return True
    return False


def check_mta_sts(domain: str, hostname: str, mode: str, address: str, lookup: Lookup,
                  ca_file: str | None) -> Iterable[Result]:
    subject = domain
    name = f"_mta-sts.{domain}"
    try:
        records = [t for t in lookup(name, "TXT") if t.startswith("v=STSv1")]
    except LookupTimeout as exc:
        yield timeout("mta-sts.record", subject, f"{name} TXT ({exc})")
        return
    found = RECORD.fullmatch(records[0]) if len(records) == 1 else None
    if found is None:
        yield error("mta-sts.record", subject, f"{len(records)} MTA-STS records at {name}" if records else
                    f"no MTA-STS record at {name}", "publish one: v=STSv1; id=<id> (the deploy does)")
        return
    yield ok("mta-sts.record", subject, f"{name}: id {found.group(1)}")
    policy_host = f"mta-sts.{domain}"
    try:
        response = fetch(address, policy_host, web.POLICY_PATH, ca_file)
    except SessionFailure as failure:
        yield failure.result("mta-sts.policy", subject)
        return
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if response.status != 200 or kind != "text/plain":
        yield error("mta-sts.policy", subject, f"https://{policy_host}{web.POLICY_PATH} answered {response.status} "
                    f"({kind or 'no content type'}); senders need 200 and text/plain (no redirects)",
                    "run the deploy again (nginx serves it)")
        return
    text = response.body.decode("utf-8", "replace")
    fields = parse_policy(text)
    problems = []
    if fields.get("version") != ["STSv1"]:
        problems.append(f"version {fields.get('version')}")
    if fields.get("mode") != [mode]:
        problems.append(f"mode {fields.get('mode')} where the spec says {mode}")
    if not covers(fields.get("mx", []), hostname):
        problems.append(f"mx {fields.get('mx', [])} does not cover {hostname}")
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit() or int(age) > 31557600:
        problems.append(f"max_age {age!r}")
    if problems:
        yield error("mta-sts.policy", subject, "the policy is wrong: " + "; ".join(problems),
                    "run the deploy again")
    else:
        yield ok("mta-sts.policy", subject, f"policy served over HTTPS: mode {mode}, mx {', '.join(fields['mx'])}, "
                                            f"max_age {age}")
    if found.group(1) != web.policy_id(text):
        yield error("mta-sts.id", subject, f"the record's id {found.group(1)} is not the served policy's "
                                           f"({web.policy_id(text)}): senders keep the policy they cached",
                    f"publish {name}. IN TXT \"v=STSv1; id={web.policy_id(text)}\" (the deploy does)")
    else:
        yield ok("mta-sts.id", subject, "the record's id is the served policy's")


def check_autoconfig(domain: str, hostname: str, address: str, lookup: Lookup,
                     ca_file: str | None) -> Iterable[Result]:
    """What a mail client given only an address finds: SRV records naming the host, and the autoconfig file
    over HTTPS naming IMAP on 993 and submission on 465, implicit TLS."""
    subject = domain
    try:
        srv = {label: lookup(f"{label}.{domain}", "SRV") for label in ("_submissions._tcp", "_imaps._tcp")}
    except LookupTimeout as exc:
        yield timeout("autoconfig.srv", subject, str(exc))
        return
    want = {"_submissions._tcp": ["465", f"{hostname}."], "_imaps._tcp": ["993", f"{hostname}."]}  # port, target
    wrong = [f"{label}.{domain} ({', '.join(found) or 'none'})" for label, found in srv.items()
             if not any(value.lower().split()[2:] == want[label] for value in found)]
    if wrong:
        yield error("autoconfig.srv", subject, "SRV records not pointing at the host: " + "; ".join(wrong),
                    "run the deploy again (it publishes them)")
    else:
        yield ok("autoconfig.srv", subject, f"SRV: submissions and imaps at {hostname}")
    name = f"autoconfig.{domain}"
    try:
        response = fetch(address, name, web.AUTOCONFIG_PATHS[0], ca_file)
    except SessionFailure as failure:
        yield failure.result("autoconfig.file", subject)
        return
    try:
        servers = {(s.get("type"), s.findtext("hostname"), s.findtext("port"), s.findtext("socketType"))
                   for s in ElementTree.fromstring(response.body).iter() if s.tag in ("incomingServer",
                                                                                        "outgoingServer")}
    except ElementTree.ParseError as exc:
        servers, response_problem = set(), f"not XML ({exc})"
    else:
        response_problem = ""
    expected = {("imap", hostname, "993", "SSL"), ("smtp", hostname, "465", "SSL")}
    if response.status != 200 or not expected <= servers:
        yield error("autoconfig.file", subject, f"https://{name}{web.AUTOCONFIG_PATHS[0]}: {response.status} "
                    f"{response_problem or sorted(map(str, servers))}", "run the deploy again (nginx serves it)")
    else:
        yield ok("autoconfig.file", subject, f"https://{name}: IMAP 993 and submission 465 at {hostname}")

