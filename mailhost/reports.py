"""`mailhost reports SPEC`: the DMARC aggregate reports (RFC 7489 7.2) that receivers send to the domains'
`rua` address, read over IMAP without changing the mailbox, and summarised for the person who runs the host:
who sent mail as each domain, how much of it passed DKIM and SPF in alignment, and which senders use our
domains from addresses that are not the host's (a forgotten newsletter service, or a forger).

Reports are parsed by `dmarc-report` (gzip, zip and plain XML; defused XML, size limits), not by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dmarc_report.exceptions import DMARCParseError
from dmarc_report.parser import DMARCParser
from dmarc_report.schema import DMARCResult, Report

from .dns.records import dmarc_rua
from .passwords import read_password
from .spec import Spec, spec_or_none
from .verify import Target, host_addresses
from .verify.checks.dns import resolver
from .verify.sessions import Mode, SessionFailure, open_session, verifying_context

# MIME types and file names receivers send reports as (RFC 7489 7.2.1.1: gzip; zip is common too).
REPORT_TYPES = {"application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
                "application/xml", "text/xml", "application/octet-stream"}
REPORT_SUFFIXES = (".xml", ".xml.gz", ".gz", ".zip")
SUBJECT = "Report Domain"  # RFC 7489 7.2.1.1's subject: "Report Domain: <domain> Submitter: ..."


class ReportsError(Exception):
    """Why the reports could not be read (names the spec field or the option to change)."""


@dataclass
class Source:
    """One sending address, as the reports saw it for one domain."""
    messages: int = 0
    passed: int = 0  # DMARC pass: DKIM or SPF aligned
    reporters: set[str] = field(default_factory=set)


@dataclass
class DomainSummary:
    """What the reports say about mail with one of our domains in From."""
    reports: int = 0
    messages: int = 0
    dmarc_pass: int = 0
    dkim_aligned: int = 0
    spf_aligned: int = 0
    policies: Counter = field(default_factory=Counter)  # the policy receivers saw published
    dispositions: Counter = field(default_factory=Counter)  # what they did with the failures
    sources: dict[str, Source] = field(default_factory=lambda: defaultdict(Source))
    begin: int | None = None
    end: int | None = None

    def unknown_senders(self, ours: set[str]) -> dict[str, Source]:
        """Sources that are not the host's addresses: services sending as the domain, or forgers."""
        return {address: source for address, source in self.sources.items() if address not in ours}


def attachments_of(raw: bytes) -> Iterable[bytes]:
    """The parts of a message that may hold a report (by type or by file name)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        if part.is_multipart():
            continue
        name = (part.get_filename() or "").lower()
        if part.get_content_type() in REPORT_TYPES or name.endswith(REPORT_SUFFIXES):
            payload = part.get_payload(decode=True)
            if payload:
                yield payload


def reports_in(raw: bytes) -> tuple[list[Report], list[str]]:
    """The aggregate reports a message carries, and why any attachment was not one."""
    found, problems = [], []
    for payload in attachments_of(raw):
        try:
            found.append(DMARCParser.parse_bytes(payload))
        except DMARCParseError as exc:
            problems.append(f"{exc} ({exc.code})")
    return found, problems


def summarise(reports: Iterable[Report], domains: Iterable[str]) -> dict[str, DomainSummary]:
    """Per domain of ours, every report's records for mail whose From domain is it."""
    ours = {d.lower() for d in domains}
    summaries: dict[str, DomainSummary] = {d: DomainSummary() for d in sorted(ours)}
    for report in reports:
        counted = set()
        for record in report.records:
            domain = record.identifiers.header_from.lower().rstrip(".")
            if domain not in ours:
                continue
            summary = summaries[domain]
            if domain not in counted:
                counted.add(domain)
                summary.reports += 1
                summary.policies[report.policy_published.p.value] += 1
                begin, end = report.report_metadata.date_range.begin, report.report_metadata.date_range.end
                summary.begin = begin if summary.begin is None else min(summary.begin, begin)
                summary.end = end if summary.end is None else max(summary.end, end)
            evaluated, count = record.policy_evaluated, record.count
            dkim, spf = evaluated.dkim == DMARCResult.PASS, evaluated.spf == DMARCResult.PASS
            summary.messages += count
            summary.dkim_aligned += count if dkim else 0
            summary.spf_aligned += count if spf else 0
            summary.dmarc_pass += count if dkim or spf else 0
            if not (dkim or spf):
                summary.dispositions[evaluated.disposition.value] += count
            source = summary.sources[record.source_ip]
            source.messages += count
            source.passed += count if dkim or spf else 0
            source.reporters.add(report.report_metadata.org_name)
    return summaries


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0"


def _day(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")


def render(summaries: dict[str, DomainSummary], ours: set[str]) -> str:
    lines = []
    for domain, s in summaries.items():
        if not s.reports:
            lines.append(f"{domain}: no reports")
            continue
        lines.append(f"{domain}: {s.reports} report(s), {_day(s.begin)} to {_day(s.end)}, {s.messages} message(s); "
                     f"published policy seen: " + ", ".join(f"p={p} ({n})" for p, n in sorted(s.policies.items())))
        lines.append(f"  DMARC pass {_share(s.dmarc_pass, s.messages)}; "
                     f"DKIM aligned {_share(s.dkim_aligned, s.messages)}; "
                     f"SPF aligned {_share(s.spf_aligned, s.messages)}")
        if s.dispositions:
            lines.append("  failing mail was: " + ", ".join(f"{d} {n}" for d, n in sorted(s.dispositions.items())))
        for address, source in sorted(s.sources.items(), key=lambda item: -item[1].messages):
            tag = "this host" if address in ours else "NOT this host"
            lines.append(f"  {address:<40} {source.messages:>6} message(s), {source.passed:>6} pass  [{tag}; "
                         f"reported by {', '.join(sorted(source.reporters))}]")
        unknown = s.unknown_senders(ours)
        if unknown:
            failing = sum(source.messages - source.passed for source in unknown.values())
            lines.append(f"  {len(unknown)} sender(s) other than this host use {domain} ({failing} message(s) failed "
                         "DMARC): if one is yours (a newsletter service), sign its mail with a key of this domain or "
                         "add it to the domain's SPF; otherwise the DMARC policy is what stops it")
    return "\n".join(lines)


def to_json(summaries: dict[str, DomainSummary], ours: set[str]) -> dict:
    return {domain: {"reports": s.reports, "messages": s.messages, "dmarc_pass": s.dmarc_pass,
                     "dkim_aligned": s.dkim_aligned, "spf_aligned": s.spf_aligned,
                     "policies": dict(s.policies), "dispositions": dict(s.dispositions),
                     "begin": s.begin, "end": s.end,
                     "sources": {address: {"messages": src.messages, "pass": src.passed, "ours": address in ours,
                                           "reporters": sorted(src.reporters)}
                                 for address, src in sorted(s.sources.items())}}
            for domain, s in summaries.items()}


def report_mailbox(spec: Spec, chosen: str | None = None) -> str:
    """The mailbox the reports arrive in: `chosen`, else where the first domain's first `rua` address leads
    (through the spec's aliases, catch-alls included, and the role addresses mailhost routes)."""
    mailboxes = {m.address for m in spec.mailboxes}
    if chosen:
        if chosen not in mailboxes:
            raise ReportsError(f"--mailbox {chosen} is not one of the spec's mailboxes")
        return chosen
    address = dmarc_rua(spec, spec.domains[0])[0]
    routes = {**spec.role_aliases, **{a.source: a.destinations[0] for a in spec.aliases}}
    seen = set()
    while address not in mailboxes and address not in seen:
        seen.add(address)
        catch_all = "@" + address.rpartition("@")[2]
        if address not in routes and catch_all not in routes:
            break
        address = routes.get(address) or routes[catch_all]
    if address not in mailboxes:
        raise ReportsError(f"DMARC reports go to {address}, which is not a mailbox on this host "
                           "(dns.dmarc.rua): read them there, or give --mailbox")
    return address


def read_reports(spec: Spec, mailbox: str, address: str, ca_file: str | None,
                 days: int | None) -> tuple[list[Report], list[str]]:
    """The reports in the INBOX of `mailbox`, over IMAPS at `address`, read-only (EXAMINE, BODY.PEEK)."""
    box = next(m for m in spec.mailboxes if m.address == mailbox)
    if not (box.password_env or box.password_file):
        raise ReportsError(f"mailbox {mailbox} has no password_env or password_file in the spec: "
                           "mailhost cannot log in to read its reports")
    try:
        password = read_password(box, spec.base_dir)
    except KeyError:
        raise ReportsError(f"the environment variable {box.password_env} (password_env of {mailbox}) is not set") \
            from None
    except OSError as exc:
        raise ReportsError(f"the password_file of {mailbox} could not be read: {exc.strerror}") from None
    since = (dt.date.today() - dt.timedelta(days=days)) if days else None
    reports, problems = [], []
    try:
        with open_session(address, 993, Mode.IMAP_TLS, spec.hostname, verifying_context(ca_file), 30.0) as imap:
            imap.login(mailbox, password)
            for uid in imap.examine_search("INBOX", SUBJECT, since):
                found, wrong = reports_in(imap.fetch(uid))
                reports += found
                problems += [f"message {uid}: {p}" for p in wrong]
    except SessionFailure as failure:
        raise ReportsError(f"IMAP at {spec.hostname} ({address}): {failure}") from None
    return reports, problems


def _reports(args: argparse.Namespace) -> int:
    spec = spec_or_none(args.spec)
    if spec is None:
        return 2
    target = Target(spec)
    addresses = host_addresses(target, resolver(spec.dns.resolvers))
    try:
        if not addresses:
            raise ReportsError(f"{spec.hostname} has no address (DNS, or addresses in the spec)")
        mailbox = report_mailbox(spec, args.mailbox)
        reports, problems = read_reports(spec, mailbox, addresses[0], target.ca_file, args.days)
    except ReportsError as exc:
        print(f"mailhost reports: {exc}", file=sys.stderr)
        return 1
    summaries, ours = summarise(reports, spec.domain_names), set(addresses)
    if args.json:
        print(json.dumps({"mailbox": mailbox, "domains": to_json(summaries, ours), "unreadable": problems},
                         indent=2))
    else:
        print(f"DMARC aggregate reports in {mailbox} ({len(reports)} report(s)"
              + (f", last {args.days} days" if args.days else "") + ")")
        print(render(summaries, ours))
        for problem in problems:
            print(f"  not a report: {problem}")
    return 0


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (1 or more)")
    return int(text)


def add_parser(sub) -> None:
    p = sub.add_parser("reports", help="summarise the DMARC aggregate reports receivers sent (read-only, IMAP)")
    p.add_argument("spec")
    p.add_argument("--mailbox", help="mailbox to read (default: where the first domain's DMARC reports go)")
    p.add_argument("--days", type=_days, help="only reports received in the last DAYS days")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=_reports)
