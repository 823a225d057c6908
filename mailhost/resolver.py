"""The host's validating resolver (unbound): the trust anchor and root hints it reads, from the spec's files.

Each file is parsed as DNS records and written out again from what was parsed, so what reaches unbound is
DNS data in one canonical form, never a line of the user's file. The spec's rules call the same functions,
so a file that would not parse stops the spec from loading, before anything changes.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name
import dns.rdatatype
import dns.zonefile

from mailhost.dnssec import Anchor

HINTS_TTL = 3600000  # what IANA's root hints file says; unbound only primes from them


def trust_anchor_lines(text: str) -> list[str]:
    """DS or DNSKEY records of one zone -> one zone-file line each (unbound's `trust-anchor-file`)."""
    try:
        anchor = Anchor.from_text(text)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not DS or DNSKEY records in zone-file syntax ({exc})") from None
    zone = anchor.zone.to_text()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", zone):
        raise ValueError(f"the anchor's zone {zone!r} is not a plain DNS name")
    return [f"{zone} IN DNSKEY {key.to_text()}" for key in anchor.keys] + \
        [f"{zone} IN DS {ds.to_text()}" for ds in anchor.ds]


def anchor_zone(text: str) -> str:
    """The zone a trust anchor is for (the top of the tree it validates), e.g. "." or "test."."""
    return trust_anchor_lines(text)[0].split()[0]


def root_hints_lines(text: str) -> list[str]:
    """The root's NS records and their servers' A/AAAA -> zone-file lines (unbound's `root-hints`)."""
    try:
        # rdclass=None: a class may be written (IN only), as `dig` prints it and zone-file syntax allows.
        rrsets = dns.zonefile.read_rrsets(text, rdclass=None, origin=dns.name.root, relativize=False,
                                          default_ttl=HINTS_TTL)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not root hints in zone-file syntax ({exc})") from None
    servers = {rd.target for rrset in rrsets if rrset.rdtype == dns.rdatatype.NS for rd in rrset}
    lines = []
    for rrset in rrsets:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name != dns.name.root:
            raise ValueError(f"an NS record for {rrset.name} (root hints name the root's servers only)")
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and rrset.name not in servers:
            raise ValueError(f"an address of {rrset.name}, which no root NS record names")
        if rrset.rdtype not in (dns.rdatatype.NS, dns.rdatatype.A, dns.rdatatype.AAAA):
            raise ValueError(f"a {dns.rdatatype.to_text(rrset.rdtype)} record (root hints hold NS, A and AAAA)")
        lines += [f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}" for rd in rrset]
    addressed = {rrset.name for rrset in rrsets if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
    if not servers or not servers <= addressed:
        missing = ", ".join(sorted(str(s) for s in servers - addressed)) or "no root NS record"
        raise ValueError(f"every root server needs an address: {missing}")
    return lines
