"""DNS as the world sees it: every authoritative server of each zone asked directly (no cache), then
the validating resolver. The expected records are the ones the DNS stage publishes
(`mailhost.dns.records.desired_records`), so verify and publish can never disagree about what is right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailhost.dns.authoritative import ask, nameservers, resolver
from mailhost.dns.records import HostFacts, RecordSet, desired_records, show
from mailhost.spec import Spec

from ..result import Result, error, ok, timeout, warn
from .lookup import Lookup, LookupTimeout, answer_texts


def check_id(record_set: RecordSet) -> str:
    """The check a record belongs to, for the report."""
    if record_set.rdtype == "MX":
        return "dns.mx"
    if record_set.rdtype in ("A", "AAAA"):
        return "dns.address"
    if "._domainkey." in record_set.name:
        return "dns.dkim"
    if record_set.name.startswith("_dmarc.") or "._report._dmarc." in record_set.name:
        return "dns.dmarc-record"
    if record_set.claim == "v=spf1":
        return "dns.spf-record"
    if record_set.name.startswith("_smtp._tls."):
        return "dns.tlsrpt-record"
    if record_set.name.startswith("_mta-sts."):
        return "dns.mta-sts-record"
    return f"dns.{record_set.rdtype.lower()}"


def authoritative_lookup(spec: Spec, res: dns.resolver.Resolver, fallback: Lookup) -> Lookup:
    """A `Lookup` that asks names in our zones of the zone's own servers, past every cache: what
    receivers will see once cached values expire. Names elsewhere (an SPF include) go to `fallback`."""
    servers: dict[str, list[str]] = {}

    def lookup(name: str, rdtype: str) -> list[str]:
        name = name.rstrip(".").lower()
        zone = spec.zone_of(name)
        if zone is None:
            return fallback(name, rdtype)
        if zone not in servers:
            try:
                servers[zone] = sorted(a for addrs in nameservers(zone, res).values() for a in addrs)
            except dns.exception.DNSException as exc:
                raise LookupTimeout(f"NS of {zone}: {exc.__class__.__name__}") from None
        for address in servers[zone]:
            try:
                _, found = ask(address, name, rdtype)
            except (dns.exception.Timeout, OSError):
                continue  # the next server
            return answer_texts(rdtype, sorted(found, key=lambda rd: rd.to_text()))
        raise LookupTimeout(f"{name} {rdtype}: no nameserver of {zone} answered")
    return lookup


def _compare(record_set: RecordSet, served: set) -> str | None:
    """What is wrong with what a server holds (None: right). Only the claimed part counts (SPF)."""
    mine = {rd for rd in served if record_set.claims(rd)}
    if not mine:
        return "missing"
    if mine != record_set.rdatas:
        return "is " + ", ".join(sorted(show(rd, 60) for rd in mine)) + \
            " instead of " + ", ".join(sorted(show(rd, 60) for rd in record_set.rdatas))
    return None


def check_records(spec: Spec, facts: HostFacts, resolvers: Sequence[str] = ()) -> Iterable[Result]:
    """Each record mailhost publishes, on every authoritative server of its zone, then through the resolver
    (which must validate it: AD)."""
    res = resolver(resolvers)
    wanted = [s for s in desired_records(spec, facts) if s.rdatas is not None]
    for zone in spec.dns_zones:
        subject = zone
        try:
            servers = nameservers(zone, res)
        except dns.exception.Timeout:
            yield timeout("dns.nameservers", subject, f"NS of {zone}")
            continue
        except dns.exception.DNSException as exc:
            yield error("dns.nameservers", subject, f"no NS for {zone} ({exc.__class__.__name__})",
                        "delegate the zone to its provider's nameservers at the registrar")
            continue
        addresses = {a: name for name, addrs in servers.items() for a in addrs}
        serials = {}
        for address in addresses:
            try:
                _, soa = ask(address, zone, "SOA")
                serials[address] = next(iter(soa)).serial if soa else None
            except dns.exception.Timeout:
                yield timeout("dns.nameservers", subject, f"{addresses[address]} ({address})")
        if len(set(serials.values())) > 1:
            yield warn("dns.nameservers", subject, f"nameservers disagree: SOA serials {sorted(set(serials.values()))}",
                       "wait for the secondaries to transfer the zone; if it lasts, check zone transfers")
        elif serials:
            yield ok("dns.nameservers", subject, f"{len(serials)} nameserver address(es) agree "
                                                 f"({', '.join(sorted(servers))})")
        for record_set in (s for s in wanted if spec.zone_of(s.name) == zone):
            yield _check_one(record_set, addresses, res)


def _check_one(record_set: RecordSet, addresses: dict[str, str], res: dns.resolver.Resolver) -> Result:
    check = check_id(record_set)
    subject = record_set.name
    where = f"{record_set.name} {record_set.rdtype}"
    wrong = []
    for address, name in sorted(addresses.items()):
        try:
            _, served = ask(address, record_set.name, record_set.rdtype)
        except dns.exception.Timeout:
            return timeout(check, subject, f"{where} from {name} ({address})")
        problem = _compare(record_set, served)
        if problem:
            wrong.append(f"{name} ({address}): {problem}")
    fix = "run the deploy (or `mailhost dns apply`) to publish it; if it was just published, wait for the " \
          "provider to serve it"
    if wrong:
        return error(check, subject, f"{where} ({record_set.purpose}) " + "; ".join(wrong), fix)
    try:
        answer = res.resolve(record_set.name, record_set.rdtype)
    except dns.exception.Timeout:
        return timeout(check, subject, f"{where} through the resolver")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return warn(check, subject, f"{where} is right on every nameserver, but the resolver still answers "
                                    "from a negative answer it cached before the record was published",
                    "wait for the zone's negative TTL (SOA minimum) and verify again")
    except dns.exception.DNSException as exc:
        return error(check, subject, f"{where}: the resolver fails on it ({exc.__class__.__name__}) although "
                                     "the authoritative servers have it", "check DNSSEC (dnssec.* results)")
    if not answer.response.flags & dns.flags.AD:
        return warn(check, subject, f"{where} is right but not DNSSEC-validated by the resolver",
                    "sign the zone and publish its DS at the registrar (see dnssec.* results)")
    return ok(check, subject, f"{where} is right on every nameserver, DNSSEC-validated ({record_set.purpose})")
