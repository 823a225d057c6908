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

SPF_CHECK = "dns.spf"

MAX_LOOKUPS = 10  # RFC 7208 4.6.4: include, a, mx, ptr, exists, redirect
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4: queries answering NXDOMAIN or no records
MAX_NAMES = 10  # RFC 7208 4.6.4: MX targets of one mx, names of one ptr
WARN_LOOKUPS = 9  # one more include and the record breaks

# An address no record should authorise ("this network", RFC 1122): evaluating it walks the path a
# stranger's mail takes, which is every term, so it counts the most lookups and shows what strangers get.
STRANGER = ipaddress.ip_address("0.0.0.1")

RESULTS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SpfOutcome:
    """What check_host() gave for one address, and what it took to get there."""
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    lookups: int  # lookups counted against MAX_LOOKUPS
    record: str  # the SPF record of the domain ("" if it has none, or more than one)
    explanation: str  # why this result, for people (temperror: the question that got no answer)
    void_lookups: int = 0
    problems: tuple[str, ...] = ()  # notes that do not change the result (a ptr mechanism)


class _PermError(Exception):
    """The record (or one it includes) is wrong: check_host() gives permerror."""


class _TempError(Exception):
    """The DNS did not answer: check_host() gives temperror."""


# --- parsing ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Term:
    text: str  # as written, for explanations
    qualifier: str
    mechanism: str
    domain_spec: str | None = None
    network: Network | None = None  # ip4, ip6
    cidr4: int = 32  # a, mx
    cidr6: int = 128


@dataclass(frozen=True)
class _Record:
    terms: tuple[_Term, ...]
    redirect: str | None


_MODIFIER = re.compile(r"([a-z][a-z0-9_.-]*)=(.*)", re.I)
_DIRECTIVE = re.compile(r"([+\-~?]?)([a-z][a-z0-9_.-]*)(.*)", re.I)
_CIDR = r"(0|[1-9][0-9]{0,2})"
_DUAL_CIDR = re.compile(rf"(.*?)(?:/{_CIDR})?(?://{_CIDR})?")
_MACRO = re.compile(r"%(?:\{([a-z])([0-9]*)(r?)([.\-+,/_=]*)\}|([%_-]))", re.I)
_TOPLABEL = r"([a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])"
_DOMAIN_END = re.compile(rf"\.{_TOPLABEL}\.?", re.I)


def is_spf(text: str) -> bool:
    """Is this TXT string an SPF record (RFC 7208 4.5: "v=spf1" alone or followed by a space)?"""
    return re.match(r"v=spf1( |$)", text, re.I) is not None


def _macro_parts(spec: str) -> list[str | re.Match]:
    """Literal text and macros; a '%' that starts no macro is a syntax error."""
    parts: list[str | re.Match] = []
    at = 0
    for m in _MACRO.finditer(spec):
        parts.append(spec[at:m.start()])
        parts.append(m)
        at = m.end()
    parts.append(spec[at:])
    if any(isinstance(p, str) and "%" in p for p in parts):
        raise _PermError(f"'{spec}' has a '%' that is not a macro (write '%%' for a percent sign)")
    return [p for p in parts if p != ""]


def _check_macros(spec: str, letters: str = "slodiphv") -> list[str | re.Match]:
    parts = _macro_parts(spec)
    for m in parts:
        if isinstance(m, re.Match) and m[1] and (m[1].lower() not in letters or m[2] == "0"):
            raise _PermError(f"'{m[0]}' is not a macro allowed here")
    return parts


def _check_domain_spec(spec: str) -> None:
    """RFC 7208 7.1: macros, then a domain end (".tld" or a macro)."""
    parts = _check_macros(spec)
    last = parts[-1] if parts else ""
    if isinstance(last, str) and not _DOMAIN_END.search(last):
        raise _PermError(f"'{spec}' is not a domain name")


def _parse_term(word: str) -> _Term:
    m = _DIRECTIVE.fullmatch(word)
    if not m:
        raise _PermError(f"'{word}' is not a mechanism")
    qualifier, name, rest = m[1] or "+", m[2].lower(), m[3]
    if name == "all" and not rest:
        return _Term(word, qualifier, name)
    if name in ("include", "exists") and rest[1:] and rest[0] == ":":
        _check_domain_spec(rest[1:])
        return _Term(word, qualifier, name, rest[1:])
    if name == "ptr" and (not rest or rest[1:] and rest[0] == ":"):
        if rest:
            _check_domain_spec(rest[1:])
        return _Term(word, qualifier, name, rest[1:] or None)
    if name in ("a", "mx"):
        return _parse_dual_cidr(word, qualifier, name, rest)
    if name in ("ip4", "ip6") and rest.startswith(":"):
        return _Term(word, qualifier, name, network=_parse_network(word, name, rest[1:]))
    raise _PermError(f"'{word}' is not a mechanism")


def _parse_dual_cidr(word: str, qualifier: str, name: str, rest: str) -> _Term:
    spec, cidr4, cidr6 = _DUAL_CIDR.fullmatch(rest).groups()
    if spec and (spec[0] != ":" or not spec[1:]):
        raise _PermError(f"'{word}' is not a mechanism")
    if spec:
        _check_domain_spec(spec[1:])
    cidr4, cidr6 = int(cidr4 or 32), int(cidr6 or 128)
    if cidr4 > 32 or cidr6 > 128:
        raise _PermError(f"'{word}' has a prefix length out of range")
    return _Term(word, qualifier, name, spec[1:] or None, cidr4=cidr4, cidr6=cidr6)


def _parse_network(word: str, name: str, text: str) -> Network:
    address, slash, length = text.partition("/")
    version = 4 if name == "ip4" else 6
    if slash and not re.fullmatch(_CIDR, length):
        raise _PermError(f"'{word}' has a bad prefix length")
    try:
        if ipaddress.ip_address(address).version != version:
            raise ValueError
        return ipaddress.ip_network(f"{address}/{length or (32 if version == 4 else 128)}", strict=False)
    except ValueError:
        raise _PermError(f"'{word}' is not an IPv{version} address or network") from None


def _parse_spf(text: str) -> _Record:
    """The whole record, before anything is evaluated: RFC 7208 4.6 makes any syntax error a permerror."""
    terms: list[_Term] = []
    modifiers: dict[str, str] = {}
    for word in text.split(" ")[1:]:
        if not word:
            continue
        m = _MODIFIER.fullmatch(word)
        if not m:
            terms.append(_parse_term(word))
            continue
        name, value = m[1].lower(), m[2]
        if name in modifiers and name in ("redirect", "exp"):
            raise _PermError(f"'{name}=' appears twice")
        if name == "redirect" or name == "exp":
            _check_domain_spec(value)
        else:
            _check_macros(value, "slodiphvcrt")  # unknown modifiers are ignored, but must parse
        modifiers[name] = value
    return _Record(tuple(terms), modifiers.get("redirect"))


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
                raise _PermError(f"more than {MAX_VOID_LOOKUPS} lookups found nothing (last: {name} {rdtype})")
        return answers

    def count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError(f"more than {MAX_LOOKUPS} DNS lookups (the 11th: '{term}')")

    def spf_record(self, domain: str) -> _Record | None:
        found = [t for t in self.query(domain, "TXT", void_counts=False) if is_spf(t)]
        if len(found) > 1:
            raise _PermError(f"{len(found)} SPF records at {domain}: " + " | ".join(sorted(found)))
        if not found:
            return None
        self.records.setdefault(domain, found[0])
        try:
            record = _parse_spf(found[0])
        except _PermError as exc:
            raise _PermError(f"syntax error in the SPF record of {domain}: {exc}") from None
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
            raise _PermError(f"redirect={target}: {why}")
        return result, why

    def matches(self, term: _Term, domain: str) -> bool:
        if term.mechanism == "all":
            return True
        if term.network is not None:
            return self.ip in term.network
        self.count(term.text)
        target = self.expand(term.domain_spec, domain) if term.domain_spec else domain
        if term.mechanism == "include":
            result, why = self.check_host(target)
            if result == "none":
                raise _PermError(f"include:{target}: {why}")
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

    def in_addresses(self, addresses: Iterable[str], term: _Term) -> bool:
        prefix = term.cidr4 if self.ip.version == 4 else term.cidr6
        return any(self.ip in ipaddress.ip_network(f"{a}/{prefix}", strict=False) for a in addresses)

    def mx_matches(self, target: str, term: _Term) -> bool:
        hosts = [mx.split()[-1].removesuffix(".").lower() for mx in self.query(target, "MX")]
        hosts = [h for h in hosts if h]  # a null MX ("0 .") names no host
        if len(hosts) > MAX_NAMES:
            raise _PermError(f"'{term.text}': {target} has {len(hosts)} MX hosts, more than {MAX_NAMES}")
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
        name = "".join(p if isinstance(p, str) else self._macro(p, domain) for p in _check_macros(spec))
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
    except _PermError as exc:
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


