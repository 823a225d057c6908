"""The SPF record's syntax (RFC 7208 4.6, 5, 6, 7): terms, dual CIDR lengths and macros, parsed into a
`Record`; anything malformed is a `PermError` (check_host() gives permerror). Pure, no DNS."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PermError(Exception):
    """The record (or one it includes) is wrong: check_host() gives permerror."""


@dataclass(frozen=True)
class Term:
    text: str  # as written, for explanations
    qualifier: str
    mechanism: str
    domain_spec: str | None = None
    network: Network | None = None  # ip4, ip6
    cidr4: int = 32  # a, mx
    cidr6: int = 128


@dataclass(frozen=True)
class Record:
    terms: tuple[Term, ...]
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
        raise PermError(f"'{spec}' has a '%' that is not a macro (write '%%' for a percent sign)")
    return [p for p in parts if p != ""]


def check_macros(spec: str, letters: str = "slodiphv") -> list[str | re.Match]:
    parts = _macro_parts(spec)
    for m in parts:
        if isinstance(m, re.Match) and m[1] and (m[1].lower() not in letters or m[2] == "0"):
            raise PermError(f"'{m[0]}' is not a macro allowed here")
    return parts


def _check_domain_spec(spec: str) -> None:
    """RFC 7208 7.1: macros, then a domain end (".tld" or a macro)."""
    parts = check_macros(spec)
    last = parts[-1] if parts else ""
    if isinstance(last, str) and not _DOMAIN_END.search(last):
        raise PermError(f"'{spec}' is not a domain name")


def _parse_term(word: str) -> Term:
    m = _DIRECTIVE.fullmatch(word)
    if not m:
        raise PermError(f"'{word}' is not a mechanism")
    qualifier, name, rest = m[1] or "+", m[2].lower(), m[3]
    if name == "all" and not rest:
        return Term(word, qualifier, name)
    if name in ("include", "exists") and rest[1:] and rest[0] == ":":
        _check_domain_spec(rest[1:])
        return Term(word, qualifier, name, rest[1:])
    if name == "ptr" and (not rest or rest[1:] and rest[0] == ":"):
        if rest:
            _check_domain_spec(rest[1:])
        return Term(word, qualifier, name, rest[1:] or None)
    if name in ("a", "mx"):
        return _parse_dual_cidr(word, qualifier, name, rest)
    if name in ("ip4", "ip6") and rest.startswith(":"):
        return Term(word, qualifier, name, network=_parse_network(word, name, rest[1:]))
    raise PermError(f"'{word}' is not a mechanism")


def _parse_dual_cidr(word: str, qualifier: str, name: str, rest: str) -> Term:
    spec, cidr4, cidr6 = _DUAL_CIDR.fullmatch(rest).groups()
    if spec and (spec[0] != ":" or not spec[1:]):
        raise PermError(f"'{word}' is not a mechanism")
    if spec:
        _check_domain_spec(spec[1:])
    cidr4, cidr6 = int(cidr4 or 32), int(cidr6 or 128)
    if cidr4 > 32 or cidr6 > 128:
        raise PermError(f"'{word}' has a prefix length out of range")
    return Term(word, qualifier, name, spec[1:] or None, cidr4=cidr4, cidr6=cidr6)


def _parse_network(word: str, name: str, text: str) -> Network:
    address, slash, length = text.partition("/")
    version = 4 if name == "ip4" else 6
    if slash and not re.fullmatch(_CIDR, length):
        raise PermError(f"'{word}' has a bad prefix length")
    try:
        if ipaddress.ip_address(address).version != version:
            raise ValueError
        return ipaddress.ip_network(f"{address}/{length or (32 if version == 4 else 128)}", strict=False)
    except ValueError:
        raise PermError(f"'{word}' is not an IPv{version} address or network") from None


def parse_spf(text: str) -> Record:
    """The whole record, before anything is evaluated: RFC 7208 4.6 makes any syntax error a permerror."""
    terms: list[Term] = []
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
            raise PermError(f"'{name}=' appears twice")
        if name == "redirect" or name == "exp":
            _check_domain_spec(value)
        else:
            check_macros(value, "slodiphvcrt")  # unknown modifiers are ignored, but must parse
        modifiers[name] = value
    return Record(tuple(terms), modifiers.get("redirect"))
