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
    zone: dns.name.Name
    keys: Sequence  # DNSKEY rdatas (trust anchors)


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
    anchor_wire = {k.to_wire() for k in anchor.keys}
    zone = anchor.zone
    keys = _zone_keys(zone, query, lambda k: k.to_wire() in anchor_wire, now)
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


def tcp_query(nameserver: str, timeout: float = 3.0) -> Query:
    """A `Query` asking one server over TCP with the DO bit (no cache, no recursion needed)."""
    import dns.query

    def ask(name: dns.name.Name, rdtype) -> dns.message.Message:
        return dns.query.tcp(dns.message.make_query(name, rdtype, want_dnssec=True), nameserver, timeout=timeout)
    return ask
