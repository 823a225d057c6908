"""SPF as a receiving mail server evaluates it (RFC 7208), lookup limits included: a record that works in a
browser-based checker but needs 11 lookups is a permerror at Gmail. Pure logic over a `Lookup`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import dns.reversename

from ..result import Result, error, ok, timeout, warn

from .lookup import Lookup, LookupTimeout
from .spf_syntax import Address, PermError, Record, Term, check_macros, is_spf, parse_spf

SPF_CHECK = "dns.spf"

MAX_LOOKUPS = 10  # RFC 7208 4.6.4: include, a, mx, ptr, exists, redirect
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4: queries answering NXDOMAIN or no records
MAX_NAMES = 10  # RFC 7208 4.6.4: MX targets of one mx, names of one ptr
WARN_LOOKUPS = 9  # one more include and the record breaks

# An address no record should authorise ("this network", RFC 1122): evaluating it walks the path a
# stranger's mail takes, which is every term, so it counts the most lookups and shows what strangers get.
STRANGER = ipaddress.ip_address("0.0.0.1")

RESULTS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


@dataclass(frozen=True)
class SpfOutcome:
    """What check_host() gave for one address, and what it took to get there."""
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    lookups: int  # lookups counted against MAX_LOOKUPS
    record: str  # the SPF record of the domain ("" if it has none, or more than one)
    explanation: str  # why this result, for people (temperror: the question that got no answer)
    void_lookups: int = 0
    problems: tuple[str, ...] = ()  # notes that do not change the result (a ptr mechanism)


class _TempError(Exception):
    """The DNS did not answer: check_host() gives temperror."""


# --- evaluation ---------------------------------------------------------------------------------------------

def _valid_domain(name: str) -> bool:
    """RFC 7208 4.3: a multi-label name with labels of 1..63 octets; anything else gives none."""
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and len(labels) > 1 and all(0 < len(label) <= 63 for label in labels)


def _address(ip: str | Address) -> Address:
    """An IPv4-mapped IPv6 address is the IPv4 address (RFC 7208 5.6)."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@dataclass
class _Evaluation:
    """One check_host() run with its nested includes: the lookup counters are shared by all of them."""
    lookup: Lookup
    ip: Address
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    records: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def query(self, name: str, rdtype: str, void_counts: bool = True) -> list[str]:
        try:
            answers = self.lookup(name, rdtype)
        except LookupTimeout:
            raise _TempError(f"{name} {rdtype}") from None
        if not answers and void_counts:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise PermError(f"more than {MAX_VOID_LOOKUPS} lookups found nothing (last: {name} {rdtype})")
        return answers

    def count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise PermError(f"more than {MAX_LOOKUPS} DNS lookups (the 11th: '{term}')")

    def spf_record(self, domain: str) -> Record | None:
        found = [t for t in self.query(domain, "TXT", void_counts=False) if is_spf(t)]
        if len(found) > 1:
            raise PermError(f"{len(found)} SPF records at {domain}: " + " | ".join(sorted(found)))
        if not found:
            return None
        self.records.setdefault(domain, found[0])
        try:
            record = parse_spf(found[0])
        except PermError as exc:
            raise PermError(f"syntax error in the SPF record of {domain}: {exc}") from None
        if any(t.mechanism == "ptr" for t in record.terms):
            self._note(f"the SPF record of {domain} uses 'ptr', which RFC 7208 5.5 says not to use")
        return record

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def check_host(self, domain: str) -> tuple[str, str]:
        """RFC 7208 4: (result, why); permerror and temperror are raised, so they cross includes."""
        if not _valid_domain(domain):
            return "none", f"'{domain}' is not a domain name"
        record = self.spf_record(domain)
        if record is None:
            return "none", f"no SPF record at {domain}"
        for term in record.terms:
            if self.matches(term, domain):
                return RESULTS[term.qualifier], f"'{term.text}' of {domain} matched"
        if record.redirect is None:
            return "neutral", f"nothing in the SPF record of {domain} matched"
        target = self.expand(record.redirect, domain)
        self.count(f"redirect={target}")
        result, why = self.check_host(target)
        if result == "none":
            raise PermError(f"redirect={target}: {why}")
        return result, why

    def matches(self, term: Term, domain: str) -> bool:
        if term.mechanism == "all":
            return True
        if term.network is not None:
            return self.ip in term.network
        self.count(term.text)
        target = self.expand(term.domain_spec, domain) if term.domain_spec else domain
        if term.mechanism == "include":
            result, why = self.check_host(target)
            if result == "none":
                raise PermError(f"include:{target}: {why}")
            return result == "pass"
        if term.mechanism == "exists":
            return bool(self.query(target, "A"))
        if term.mechanism == "a":
            return self.in_addresses(self.query(target, self.address_type), term)
        if term.mechanism == "mx":
            return self.mx_matches(target, term)
        return self.ptr_matches(target)

    @property
    def address_type(self) -> str:
        return "A" if self.ip.version == 4 else "AAAA"

    def in_addresses(self, addresses: Iterable[str], term: Term) -> bool:
        prefix = term.cidr4 if self.ip.version == 4 else term.cidr6
        return any(self.ip in ipaddress.ip_network(f"{a}/{prefix}", strict=False) for a in addresses)

    def mx_matches(self, target: str, term: Term) -> bool:
        hosts = [mx.split()[-1].removesuffix(".").lower() for mx in self.query(target, "MX")]
        hosts = [h for h in hosts if h]  # a null MX ("0 .") names no host
        if len(hosts) > MAX_NAMES:
            raise PermError(f"'{term.text}': {target} has {len(hosts)} MX hosts, more than {MAX_NAMES}")
        return any(self.in_addresses(self.query(h, self.address_type, void_counts=False), term) for h in hosts)

    def ptr_matches(self, target: str) -> bool:
        """RFC 7208 5.5: a name of the address in the target domain that leads back to the address. A DNS
        error is no match here (not temperror), as the RFC says."""
        reverse = dns.reversename.from_address(str(self.ip)).to_text(omit_final_dot=True)
        try:
            names = [n.removesuffix(".").lower() for n in self.query(reverse, "PTR")][:MAX_NAMES]
        except _TempError:
            return False
        return any((n == target or n.endswith("." + target)) and self._leads_back(n) for n in names)

    def _leads_back(self, name: str) -> bool:
        try:
            return any(self.ip == ipaddress.ip_address(a) for a in self.query(name, self.address_type, False))
        except _TempError:
            return False

    def expand(self, spec: str, domain: str) -> str:
        """RFC 7208 7: macros expanded, then trimmed from the left to 253 octets."""
        name = "".join(p if isinstance(p, str) else self._macro(p, domain) for p in check_macros(spec))
        name = name.removesuffix(".").lower()
        while len(name) > 253 and "." in name:
            name = name.split(".", 1)[1]
        return name

    def _macro(self, m: re.Match, domain: str) -> str:
        if m[5]:
            return {"%": "%", "_": " ", "-": "%20"}[m[5]]
        letter, digits, reverse, delimiters = m[1], m[2], m[3], m[4] or "."
        parts = re.split("[" + re.escape(delimiters) + "]", self._macro_value(letter.lower(), domain))
        if reverse:
            parts.reverse()
        if digits:
            parts = parts[-int(digits):]
        value = ".".join(parts)
        return quote(value, safe="") if letter.isupper() else value

    def _macro_value(self, letter: str, domain: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")
        return {
            "s": self.sender, "l": local or "postmaster", "o": sender_domain, "d": domain, "h": self.helo,
            "i": str(self.ip) if self.ip.version == 4 else ".".join(self.ip.exploded.replace(":", "")),
            "v": "in-addr" if self.ip.version == 4 else "ip6",
            "p": "unknown",  # validating the name would cost lookups; RFC 7208 7.3 allows "unknown"
        }[letter]


def evaluate_spf(domain: str, ip: str | Address, lookup: Lookup, sender: str | None = None,
                 helo: str | None = None) -> SpfOutcome:
    """check_host(ip, domain, sender) of RFC 7208; the sender defaults to postmaster@domain (a bounce)."""
    domain = domain.removesuffix(".").lower()
    run = _Evaluation(lookup, _address(ip), sender or f"postmaster@{domain}", helo or domain)
    try:
        result, why = run.check_host(domain)
    except PermError as exc:
        result, why = "permerror", str(exc)
    except _TempError as exc:
        result, why = "temperror", str(exc)
    return SpfOutcome(result, run.lookups, run.records.get(domain, ""), why, run.voids, tuple(run.problems))


# --- the SPF check ----------------------------------------------------------------------------------------------

def check_spf(domain: str, host_addresses: Sequence[str], lookup: Lookup) -> list[Result]:
    """The record is sound (syntax, limits, what strangers get) and authorises every address of the host."""
    stranger = evaluate_spf(domain, STRANGER, lookup)
    results = list(_record_results(domain, stranger))
    if stranger.result in ("none", "permerror", "temperror"):
        return results  # the record's own failure says it for every address
    results += [_address_result(domain, a, evaluate_spf(domain, a, lookup)) for a in host_addresses]
    return results


def _record_results(domain: str, stranger: SpfOutcome) -> Iterator[Result]:
    where = f"the SPF record of {domain}"
    if stranger.result == "temperror":
        yield timeout(SPF_CHECK, domain, f"{stranger.explanation} (SPF of {domain})")
    elif stranger.result == "none":
        yield error(SPF_CHECK, domain, f"no SPF record at {domain}: receivers cannot tell who sends as it",
                    f'publish TXT "v=spf1 mx -all" at {domain}')
    elif stranger.result == "permerror":
        fix = f"correct {where}"
        if stranger.lookups > MAX_LOOKUPS:
            fix = f"shorten {where}: replace include/a/mx terms by the ip4:/ip6: networks they stand for"
        yield error(SPF_CHECK, domain, f"SPF permerror: {stranger.explanation}", fix)
    elif stranger.result == "pass":
        yield error(SPF_CHECK, domain, f"{where} lets any server send as {domain} ({stranger.explanation})",
                    f"list only your servers in {where} and end it with -all")
    else:
        yield ok(SPF_CHECK, domain, f"SPF record valid, {stranger.lookups} of {MAX_LOOKUPS} DNS lookups, "
                                    f"other servers get {stranger.result}: {stranger.record}")
    if stranger.result == "neutral":
        yield warn(SPF_CHECK, domain, f"mail from other servers gets neutral ({stranger.explanation})",
                   f"end {where} with -all (or ~all)")
    if WARN_LOOKUPS <= stranger.lookups <= MAX_LOOKUPS:
        yield warn(SPF_CHECK, domain, f"{where} needs {stranger.lookups} of at most {MAX_LOOKUPS} DNS lookups",
                   "replace include/a/mx terms by ip4:/ip6: networks before one more include breaks it")
    for problem in stranger.problems:
        yield warn(SPF_CHECK, domain, problem, f"replace ptr in {where} by ip4:/ip6: or a")


def _address_result(domain: str, address: str, outcome: SpfOutcome) -> Result:
    if outcome.result == "pass":
        return ok(SPF_CHECK, domain, f"{address} may send as {domain} ({outcome.explanation})")
    if outcome.result == "temperror":
        return timeout(SPF_CHECK, domain, f"{outcome.explanation} (SPF of {domain} for {address})")
    network = "ip4" if _address(address).version == 4 else "ip6"
    return error(SPF_CHECK, domain, f"{address} may not send as {domain}: SPF {outcome.result} "
                                    f"({outcome.explanation})",
                 f"add `mx` or `{network}:{address}` to the SPF record of {domain}")


