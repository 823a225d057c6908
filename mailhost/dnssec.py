"""Validate a DNSSEC chain of trust from a configured anchor down to one RRset.

Used by verification (the real root anchor in production, the lab's `test.` key in tests).
The chain is walked explicitly (DNSKEY -> DS -> DNSKEY ... -> RRset), so a failure says
which link is broken instead of a resolver's bare SERVFAIL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Query = Callable[[dns.name.Name, dns.rdatatype.RdataType], dns.message.Message]


class ChainError(Exception):
    """A link of the chain is missing or does not validate; the message names it."""


@dataclass(frozen=True)
class Anchor:
    """Where trust starts: DNSKEYs, or DS records of the anchor zone's keys (as the root's is published)."""
    zone: dns.name.Name
    keys: Sequence = ()  # DNSKEY rdatas
    ds: Sequence = ()  # DS rdatas

    def trusts(self, key) -> bool:
        return key.to_wire() in {k.to_wire() for k in self.keys} or \
            any(dns.dnssec.make_ds(self.zone, key, ds.digest_type) == ds for ds in self.ds)

    @classmethod
    def from_text(cls, text: str) -> Anchor:
        """DNSKEY and/or DS records in zone-file syntax, all of one zone (e.g. `. IN DS 20326 8 2 E06D...`)."""
        keys, ds, zones = [], [], set()
        for line in text.splitlines():
            line = line.split(";", 1)[0].strip()
            if not line:
                continue
            rrset = dns.rrset.from_text(*_split_record(line))
            zones.add(rrset.name)
            (keys if rrset.rdtype == dns.rdatatype.DNSKEY else ds).extend(rrset)
        if len(zones) != 1 or not (keys or ds):
            raise ValueError("a trust anchor is DNSKEY or DS records of one zone")
        return cls(zones.pop(), tuple(keys), tuple(ds))


def _split_record(line: str) -> tuple:
    """`name [ttl] [IN] TYPE rdata` -> arguments of dns.rrset.from_text."""
    words = line.split()
    name, rest = words[0], words[1:]
    ttl = int(rest.pop(0)) if rest and rest[0].isdigit() else 0
    if rest and rest[0].upper() == "IN":
        rest.pop(0)
    if not rest or rest[0].upper() not in ("DS", "DNSKEY"):
        raise ValueError(f"not a DS or DNSKEY record: {line!r}")
    # A name without the final dot is relative to the root (zone-file syntax without $ORIGIN, as root hints are
    # read), not left relative: a relative anchor zone is under no name, so nothing would ever validate from it.
    return dns.name.from_text(name, origin=dns.name.root), ttl, "IN", rest[0], " ".join(rest[1:])


# The root zone's key-signing keys (KSK-2017, KSK-2024), as IANA publishes them.
ROOT = Anchor.from_text(""". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
""")


def find(msg: dns.message.Message, name: dns.name.Name, rdtype,
         covers=dns.rdatatype.NONE) -> dns.rrset.RRset | None:
    """The answer RRset `name`/`rdtype` (RRSIGs: `covers`), or None."""
    return next((r for r in msg.answer if r.name == name and r.rdtype == rdtype and r.covers == covers
                 and r.rdclass == dns.rdataclass.IN), None)


def _rrsets(msg: dns.message.Message, name: dns.name.Name, rdtype) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    rrset = find(msg, name, rdtype)
    sigs = find(msg, name, dns.rdatatype.RRSIG, rdtype)
    if rrset is None:
        raise ChainError(f"no {dns.rdatatype.to_text(rdtype)} at {name}")
    if sigs is None:
        raise ChainError(f"{name} {dns.rdatatype.to_text(rdtype)} is not signed (no RRSIG)")
    return rrset, sigs


def validate(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset, zone: dns.name.Name, keys: dns.rrset.RRset,
             now: float | None = None) -> None:
    """Check `rrset` against its RRSIGs made by one of `keys` (zone's DNSKEY RRset)."""
    try:
        dns.dnssec.validate(rrset, sigs, {zone: keys}, now=now)
    except dns.dnssec.ValidationFailure as exc:
        raise ChainError(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: signature does not validate "
                         f"with {zone} DNSKEY ({exc})") from None


def _zone_keys(zone: dns.name.Name, query: Query, trusted: Callable[[object], bool],
               now: float | None) -> dns.rrset.RRset:
    """The DNSKEY RRset of `zone`, self-signed by a key that `trusted` accepts."""
    keys, sigs = _rrsets(query(zone, dns.rdatatype.DNSKEY), zone, dns.rdatatype.DNSKEY)
    entry = [k for k in keys if trusted(k)]
    if not entry:
        raise ChainError(f"{zone} DNSKEY: no key matches the trust anchor or the DS at the parent")
    validate(keys, sigs, zone, dns.rrset.from_rdata_list(zone, keys.ttl, entry), now)
    return keys


def validate_chain(qname: str | dns.name.Name, rdtype: str | dns.rdatatype.RdataType, anchor: Anchor,
                   query: Query, now: float | None = None) -> dns.rrset.RRset:
    """Return the RRset `qname`/`rdtype` after validating every link from `anchor`; raise ChainError."""
    qname = dns.name.from_text(qname) if isinstance(qname, str) else qname
    rdtype = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
    if not qname.is_subdomain(anchor.zone):
        raise ChainError(f"{qname} is not under the trust anchor {anchor.zone}")
    zone = anchor.zone
    keys = _zone_keys(zone, query, anchor.trusts, now)
    # Walk down label by label; every zone apex on the way must be delegated securely.
    depth = len(anchor.zone.labels)
    for cut in range(depth + 1, len(qname.labels) + 1):
        name = qname.split(cut)[1]
        if find(query(name, dns.rdatatype.SOA), name, dns.rdatatype.SOA) is None:
            continue  # not a zone apex
        ds_set, ds_sigs = _rrsets(query(name, dns.rdatatype.DS), name, dns.rdatatype.DS)
        validate(ds_set, ds_sigs, zone, keys, now)

        def matches_ds(key, child=name, ds_set=ds_set) -> bool:
            return any(dns.dnssec.make_ds(child, key, ds.digest_type) == ds for ds in ds_set)
        keys = _zone_keys(name, query, matches_ds, now)
        zone = name
    rrset, sigs = _rrsets(query(qname, rdtype), qname, rdtype)
    validate(rrset, sigs, zone, keys, now)
    return rrset


def tcp_query(nameserver: str, timeout: float = 3.0, port: int = 53) -> Query:
    """A `Query` asking one server over TCP with the DO bit. For a recursive resolver the CD bit is set too:
    we want the records and their signatures as they are, and to judge them ourselves. A connection the
    server refuses or drops is no answer, as a timeout is (callers report both the same way)."""
    import dns.exception
    import dns.flags
    import dns.query

    def ask(name: dns.name.Name, rdtype) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.CD
        try:
            return dns.query.tcp(query, nameserver, timeout=timeout, port=port)
        except (ConnectionError, EOFError) as exc:
            raise dns.exception.Timeout(f"{nameserver}: {exc.__class__.__name__}") from exc
    return ask
