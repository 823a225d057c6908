"""DMARC records read the way RFC 7489 says a receiver reads them, their report addresses' authorisation, and
alignment against the organisational domain (from the Public Suffix List). Pure logic over a `Lookup`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from publicsuffixlist import PublicSuffixList

from ..result import Result, error, ok, timeout, warn

from .lookup import Lookup, LookupTimeout

DMARC_CHECK = "dns.dmarc"


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
