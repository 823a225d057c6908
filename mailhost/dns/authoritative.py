"""Asking DNS the way a checker must: a resolver of the spec's choice (validating answers carry AD), a zone's
authoritative servers as delegated, and one question to one of them with no cache in between. Verify's DNS
checks and the key rollover's "is it served everywhere" both ask this way."""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailhost.dns.records import canonical

TIMEOUT = 5.0


def resolver(nameservers: Sequence[str]) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        res.nameservers = list(nameservers)
    res.lifetime = TIMEOUT
    res.use_edns(0, dns.flags.DO, 1232)
    return res


def nameservers(zone: str, res: dns.resolver.Resolver) -> dict[str, list[str]]:
    """The zone's NS names and their addresses, as delegated (asked through the resolver)."""
    servers: dict[str, list[str]] = {}
    for ns in res.resolve(zone, "NS"):
        name = ns.target.to_text()
        addresses = []
        for rdtype in ("A", "AAAA"):
            try:
                addresses += [a.to_text() for a in res.resolve(name, rdtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                pass
        servers[name] = addresses
    return servers


def ask(server: str, name: str, rdtype: str) -> tuple[dns.rcode.Rcode, set]:
    """One question to one authoritative server, no recursion: (rcode, canonical answer set)."""
    query = dns.message.make_query(name + ".", rdtype)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server, timeout=TIMEOUT)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server, timeout=TIMEOUT)
    found = response.get_rrset(response.answer, dns.name.from_text(name), dns.rdataclass.IN,
                               dns.rdatatype.from_text(rdtype))
    return response.rcode(), {canonical(rd) for rd in found or ()}


def served_everywhere(zone: str | None, resolvers: Sequence[str], name: str, rdtype: str,
                      wanted: dns.rdata.Rdata) -> bool | None:
    """Does every authoritative nameserver of `zone` answer `name` `rdtype` with `wanted` among its records?
    None: could not tell (no zone of ours, a server that did not answer). A key rollover waits for True."""
    if zone is None:
        return None
    try:
        servers = nameservers(zone, resolver(resolvers))
        addresses = [a for found in servers.values() for a in found]
        return bool(addresses) and all(canonical(wanted) in ask(a, name, rdtype)[1] for a in addresses)
    except dns.exception.DNSException:
        return None
