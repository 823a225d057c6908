"""SPF and DMARC as a receiving mail server evaluates them: pure logic over an injected DNS lookup.

Verify asks "would a receiver accept mail from our host as our domains?", so SPF is evaluated the way
RFC 7208 says a receiver does (lookup limits included: a record that works in a browser-based checker but
needs 11 lookups is a permerror at Gmail), and DMARC records are read the way RFC 7489 says. Every DNS
question goes through a `Lookup` function: verify passes one backed by a resolver, tests a dict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import dns.reversename
from publicsuffixlist import PublicSuffixList

from ..result import Result, Status, error, ok, timeout, warn

Lookup = Callable[[str, str], list[str]]
"""(name, rdtype) -> the answers as text: TXT strings joined, without quotes; A/AAAA addresses;
MX "preference target"; PTR target names. A name without such records (NXDOMAIN or NODATA, which SPF and
DMARC treat alike) is an empty list, never an exception; no answer in time (or SERVFAIL) raises
`LookupTimeout`."""


class LookupTimeout(Exception):
    """The DNS gave no usable answer: SPF says temperror, verify says timeout (never a pass, never a fail)."""


def answer_texts(rdtype: str, rdatas: Iterable) -> list[str]:
    """dnspython rdata as a `Lookup` answers them."""
    if rdtype == "TXT":
        return [b"".join(rd.strings).decode(errors="replace") for rd in rdatas]
    if rdtype == "MX":
        return [f"{rd.preference} {rd.exchange.to_text(omit_final_dot=True)}" for rd in rdatas]
    return [rd.to_text() for rd in rdatas]


def despite_caches(judge: Callable[[Lookup], Iterable[Result]], lookup: Lookup,
                   fresh: Lookup | None) -> list[Result]:
    """Judge with what receivers see (`lookup`, through a resolver). An error there that the records on
    the authoritative servers (`fresh`) already clear comes from a resolver still serving a value cached
    before the last publish, e.g. by the deploy that just ran: a warning, since it passes once that
    value's TTL has run out. Errors the authoritative records share stay errors."""
    seen = list(judge(lookup))
    if fresh is None or not any(r.status is Status.ERROR for r in seen):
        return seen
    now: dict[tuple[str, str], list[Result]] = {}
    for r in judge(fresh):
        now.setdefault((r.check, r.subject), []).append(r)
    cleared = {key for key, results in now.items() if not any(r.status.failed for r in results)}
    return [warn(r.check, r.subject, f"{r.message}, as the resolver answers; the authoritative servers already "
                                     "serve records that pass, so the resolver still holds values cached before "
                                     "they were published", "verify again once the records' TTL has passed")
            if r.status is Status.ERROR and (r.check, r.subject) in cleared else r
            for r in seen]


SPF_CHECK = "dns.spf"
DMARC_CHECK = "dns.dmarc"

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


# --- DMARC ------------------------------------------------------------------------------------------------------

POLICIES = ("none", "quarantine", "reject")
_DMARC = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")
_MAILTO = re.compile(r"mailto:([^@\s!,]+@([^@\s!,]+))(![0-9]+[kmgt]?)?", re.I)


def is_dmarc(text: str) -> bool:
    """Is this TXT string a DMARC record (RFC 7489 6.6.3: others at the name are discarded)?"""
    return _DMARC.match(text) is not None


def parse_dmarc(text: str) -> dict[str, str]:
    """The tags of a DMARC record, names lowercase, in order. ValueError unless it is tag=value pairs with
    v=DMARC1 first; values are checked by `dmarc_problems`, so a receiver's two stages stay apart."""
    tags: dict[str, str] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if not equals or not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"'{part}' is not tag=value")
        if name in tags:
            raise ValueError(f"'{name}' appears twice")
        tags[name] = value.strip()
    if list(tags)[:1] != ["v"] or tags["v"] != "DMARC1":
        raise ValueError("a DMARC record starts with v=DMARC1")
    return tags


def report_addresses(value: str) -> list[str]:
    """The mailto: addresses of a rua/ruf value; ValueError for anything else (other schemes are not
    delivered to by receivers in practice)."""
    addresses = []
    for uri in (u.strip() for u in value.split(",")):
        m = _MAILTO.fullmatch(uri)
        if not m:
            raise ValueError(f"'{uri}' is not a mailto: address")
        addresses.append(m[1])
    return addresses


def _uint(value: str, limit: int) -> bool:
    return re.fullmatch(r"[0-9]+", value) is not None and int(value) <= limit


def _addresses_ok(value: str) -> bool:
    try:
        return bool(report_addresses(value))
    except ValueError:
        return False


_TAG_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "v": (lambda v: v == "DMARC1", "DMARC1"),
    "p": (lambda v: v.lower() in POLICIES, "none, quarantine or reject"),
    "sp": (lambda v: v.lower() in POLICIES, "none, quarantine or reject"),
    "adkim": (lambda v: v.lower() in ("r", "s"), "r or s"),
    "aspf": (lambda v: v.lower() in ("r", "s"), "r or s"),
    "pct": (lambda v: _uint(v, 100), "a number from 0 to 100"),
    "ri": (lambda v: _uint(v, 2**32 - 1), "a number of seconds"),
    "fo": (lambda v: all(o.strip() in ("0", "1", "d", "s") for o in v.split(":")), "0, 1, d or s, ':'-separated"),
    "rf": (lambda v: all(f.strip().lower() == "afrf" for f in v.split(":")), "afrf"),
    "rua": (_addresses_ok, "mailto: addresses, ','-separated"),
    "ruf": (_addresses_ok, "mailto: addresses, ','-separated"),
}


def dmarc_problems(tags: Mapping[str, str]) -> list[str]:
    """What makes receivers ignore (part of) the record: a missing p, values out of range. Unknown tags are
    not problems (RFC 7489 6.3 says to ignore them)."""
    problems = [] if "p" in tags else ["no p= (policy) tag"]
    for name, value in tags.items():
        valid, wanted = _TAG_RULES.get(name, (lambda v: True, ""))
        if not valid(value):
            problems.append(f"{name}={value} (must be {wanted})")
    return problems


def check_dmarc(domain: str, lookup: Lookup, our_domains: Iterable[str],
                expected_policy: str | None = None) -> list[Result]:
    """One valid DMARC record at _dmarc.<domain>, its policy, and reports that will actually arrive."""
    domain = domain.removesuffix(".").lower()
    name = f"_dmarc.{domain}"
    try:
        found = [t for t in lookup(name, "TXT") if is_dmarc(t)]
    except LookupTimeout:
        return [timeout(DMARC_CHECK, domain, f"TXT {name}")]
    suggested = f'"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"'
    if not found:
        return [error(DMARC_CHECK, domain, f"no DMARC record at {name}: receivers apply no policy",
                      f"publish TXT {suggested} at {name}")]
    if len(found) > 1:
        return [error(DMARC_CHECK, domain, f"{len(found)} DMARC records at {name}: receivers apply none of them",
                      f"keep one record at {name}")]
    try:
        tags = parse_dmarc(found[0])
        problems = dmarc_problems(tags)
    except ValueError as exc:
        problems = [str(exc)]
    if problems:
        return [error(DMARC_CHECK, domain, f"invalid DMARC record at {name}: " + "; ".join(problems),
                      f"correct the record at {name}, e.g. {suggested}")]
    results = [_policy_result(domain, tags, expected_policy)]
    unknown = sorted(set(tags) - set(_TAG_RULES))
    if unknown:
        results.append(warn(DMARC_CHECK, domain, f"unknown tag(s) {', '.join(unknown)} at {name} are ignored",
                            "check their spelling"))
    return results + _report_results(domain, tags, lookup, {d.removesuffix(".").lower() for d in our_domains})


def _policy_result(domain: str, tags: Mapping[str, str], expected: str | None) -> Result:
    policy = tags["p"].lower()
    if expected and policy != expected:
        return warn(DMARC_CHECK, domain, f"DMARC policy is p={policy}, the spec says p={expected}",
                    "publish the spec's record (`mailhost dns apply`)")
    if policy == "none":
        return warn(DMARC_CHECK, domain, "DMARC policy p=none: receivers deliver mail that fails DMARC",
                    "set p=quarantine (or reject) once the reports show all your mail passes")
    return ok(DMARC_CHECK, domain, f"DMARC policy p={policy}")


def _report_results(domain: str, tags: Mapping[str, str], lookup: Lookup, ours: set[str]) -> list[Result]:
    """rua present, and every destination outside the domain agreed to receive its reports (RFC 7489 7.1)."""
    if "rua" not in tags:
        results = [warn(DMARC_CHECK, domain, "no rua= in the DMARC record: nobody gets aggregate reports",
                        f"add rua=mailto:postmaster@{domain} to the record at _dmarc.{domain}")]
    else:
        results = [ok(DMARC_CHECK, domain, f"aggregate reports go to {', '.join(report_addresses(tags['rua']))}")]
    addresses = [a for tag in ("rua", "ruf") if tag in tags for a in report_addresses(tags[tag])]
    destinations = sorted({a.rpartition("@")[2].lower() for a in addresses})
    for destination in destinations:
        if organisational_domain(destination) != organisational_domain(domain):
            results.append(_authorisation_result(domain, destination, lookup, destination in ours))
    return results


def _authorisation_result(domain: str, destination: str, lookup: Lookup, ours: bool) -> Result:
    name = f"{domain}._report._dmarc.{destination}"
    try:
        agreed = any(is_dmarc(t) for t in lookup(name, "TXT"))
    except LookupTimeout:
        return timeout(DMARC_CHECK, domain, f"TXT {name}")
    if agreed:
        return ok(DMARC_CHECK, domain, f"{destination} accepts DMARC reports about {domain}")
    fix = (f'publish TXT "v=DMARC1" at {name} (`mailhost dns apply` does)' if ours
           else f'ask whoever runs {destination} to publish TXT "v=DMARC1" at {name}, '
                f"or send the reports to an address at {domain}")
    return error(DMARC_CHECK, domain, f"{destination} has not agreed to receive DMARC reports about {domain} "
                                      f"(no v=DMARC1 at {name}): receivers send it none", fix)


# --- alignment --------------------------------------------------------------------------------------------------

_PUBLIC_SUFFIXES = PublicSuffixList()  # the list the package bundles: no network


def organisational_domain(name: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label, from the Public Suffix List as receivers use it
    (mail.example.co.uk -> example.co.uk); a name that is itself a public suffix is its own."""
    name = name.removesuffix(".").lower()
    return _PUBLIC_SUFFIXES.privatesuffix(name) or name


def aligned(a: str, b: str, mode: str) -> bool:
    """RFC 7489 3.1: strict is the same name, relaxed the same organisational domain."""
    a, b = a.removesuffix(".").lower(), b.removesuffix(".").lower()
    return a == b if mode.lower() == "s" else organisational_domain(a) == organisational_domain(b)


def dmarc_alignment(header_from_domain: str, spf_domain: str, spf_result: str, dkim_domains_passing: Iterable[str],
                    record: Mapping[str, str] | str) -> str:
    """"pass" if SPF passed for an aligned domain or a passing DKIM signature is aligned (RFC 7489 4.2)."""
    tags = parse_dmarc(record) if isinstance(record, str) else record
    spf = spf_result == "pass" and aligned(spf_domain, header_from_domain, tags.get("aspf", "r"))
    dkim = any(aligned(d, header_from_domain, tags.get("adkim", "r")) for d in dkim_domains_passing)
    return "pass" if spf or dkim else "fail"
