"""DNSSEC of each zone: signed, DS at the parent matches a key, signatures valid and not about to expire,
and the whole chain validating from the trust anchor (the root in production, the lab's key in tests)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import dns.exception
import dns.name
import dns.rdatatype

from mailhost import dnssec
from mailhost.dns.signing import ds_of_keys, normal_ds, parent_ds

from ..result import Result, error, ok, timeout, warn

DAY = 86400


def check_zone(zone: str, query: dnssec.Query, anchor: dnssec.Anchor, resolvers: Sequence[str] = (),
               rrsig_min_days: int = 3, probe: Iterable[tuple[str, str]] = ()) -> Iterable[Result]:
    """`query` asks a resolver with DO+CD (raw records and signatures); `probe` names records to validate."""
    origin = dns.name.from_text(zone)
    try:
        answer = query(origin, dns.rdatatype.DNSKEY)
    except dns.exception.Timeout:
        yield timeout("dnssec.signed", zone, f"DNSKEY of {zone}")
        return
    keys = dnssec.find(answer, origin, dns.rdatatype.DNSKEY)
    if not keys:
        yield error("dnssec.signed", zone, "the zone is not signed (no DNSKEY)",
                    "turn on DNSSEC at the DNS provider (dns.dnssec: true) or in the server")
        return
    yield ok("dnssec.signed", zone, f"signed: {len(keys)} DNSKEY(s), algorithm(s) "
                                    f"{', '.join(sorted({str(k.algorithm.value) for k in keys}))}")
    yield _parent(zone, keys, resolvers)
    yield from _signatures(zone, origin, query, probe, rrsig_min_days)
    yield _chain(zone, query, anchor, probe)


def _parent(zone: str, keys, resolvers: Sequence[str]) -> Result:
    expected = ds_of_keys(zone, keys)
    found = parent_ds(zone, resolvers)
    if found is None:
        return timeout("dnssec.ds", zone, f"DS of {zone} at the parent")
    if set(expected) & set(found):
        return ok("dnssec.ds", zone, "the parent's DS matches a key-signing key")
    publish = "; ".join(f"{zone}. IN DS {ds}" for ds in expected)
    if not found:
        return error("dnssec.ds", zone, "the parent has no DS for the zone, so its signatures count for nothing",
                     f"publish at the registrar: {publish}")
    return error("dnssec.ds", zone, f"the parent's DS ({', '.join(normal_ds(d) for d in found)}) matches no key "
                                    "of the zone: validating resolvers answer SERVFAIL",
                 f"replace it at the registrar with: {publish}")


def _signatures(zone: str, origin: dns.name.Name, query: dnssec.Query, probe: Iterable[tuple[str, str]],
                min_days: int) -> Iterable[Result]:
    """The earliest RRSIG expiry among the zone's apex and probed records."""
    soonest: tuple[float, str] | None = None
    for name, rdtype in [(zone, "SOA"), (zone, "DNSKEY"), *probe]:
        qname = dns.name.from_text(name)
        answer = query(qname, dns.rdatatype.from_text(rdtype))
        sigs = dnssec.find(answer, qname, dns.rdatatype.RRSIG, dns.rdatatype.from_text(rdtype))
        for sig in sigs or ():
            if soonest is None or sig.expiration < soonest[0]:
                soonest = (sig.expiration, f"{name} {rdtype}")
    if soonest is None:
        return
    days = (soonest[0] - time.time()) / DAY
    if days < 0:
        yield error("dnssec.rrsig", zone, f"the signature of {soonest[1]} expired {-days:.1f} days ago",
                    "the signer has stopped re-signing: check the provider or the server's signing")
    elif days < min_days:
        yield warn("dnssec.rrsig", zone, f"the signature of {soonest[1]} expires in {days:.1f} days",
                   "check that the signer re-signs the zone")
    else:
        yield ok("dnssec.rrsig", zone, f"signatures valid for at least {days:.0f} more days")


def _chain(zone: str, query: dnssec.Query, anchor: dnssec.Anchor, probe: Iterable[tuple[str, str]]) -> Result:
    names = [(zone, "SOA"), *probe]
    try:
        for name, rdtype in names:
            dnssec.validate_chain(name, rdtype, anchor, query)
    except dnssec.ChainError as exc:
        return error("dnssec.chain", zone, f"the chain of trust from {anchor.zone} is broken: {exc}",
                     "fix the link named above (usually the DS at the registrar)")
    except dns.exception.Timeout:
        return timeout("dnssec.chain", zone, "a query while walking the chain of trust")
    return ok("dnssec.chain", zone, f"validates from the trust anchor {anchor.zone} "
                                    f"({', '.join(' '.join(n) for n in names)})")
