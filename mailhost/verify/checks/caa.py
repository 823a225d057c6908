"""CAA (RFC 8659): which CAs may issue for the host name. The records that count are the first CAA RRset
found climbing from the name towards the root; if they leave out our ACME CA, renewals fail."""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.rdata

from mailhost.dns.records import rdata

from ..result import Result, error, ok, timeout, warn
from .lookup import Lookup, LookupTimeout

CHECK = "dns.caa"


def relevant_caa(hostname: str, lookup: Lookup) -> tuple[str, list[dns.rdata.Rdata]]:
    """(name where found, records): the CAA set that governs `hostname` (empty: none anywhere above it)."""
    labels = hostname.rstrip(".").split(".")
    for i in range(len(labels)):
        name = ".".join(labels[i:])
        found = lookup(name, "CAA")
        if found:
            return name, [rdata("CAA", text) for text in found]
    return "", []


def issuers(records: Iterable[dns.rdata.Rdata]) -> set[str]:
    """The CA identities an `issue` property names (parameters after `;` dropped; an empty one forbids all)."""
    return {rd.value.decode().split(";")[0].strip().lower() for rd in records if rd.tag.decode().lower() == "issue"}


def check_caa(hostname: str, issuer: str | None, lookup: Lookup) -> Iterable[Result]:
    try:
        where, records = relevant_caa(hostname, lookup)
    except (LookupTimeout, dns.exception.DNSException) as exc:
        yield timeout(CHECK, hostname, f"CAA of {hostname} ({exc})")
        return
    allowed = issuers(records)
    # No record, or none with an `issue` property (only iodef, or issuewild, which a name without a wildcard
    # ignores): CAA then restricts nothing (RFC 8659 3).
    if not allowed:
        found = f"the CAA records at {where} restrict no issuance" if records else "no CAA record"
        if issuer:
            yield error(CHECK, hostname, f"{found}: any CA may issue for {hostname}",
                        f"publish {hostname}. IN CAA 0 issue \"{issuer}\" (the deploy does)")
        else:
            yield warn(CHECK, hostname, f"{found}: any CA may issue for it",
                       "set tls.caa_issuer to your ACME CA's CAA identity")
        return
    if issuer and issuer.lower() not in allowed:
        yield error(CHECK, hostname, f"the CAA records at {where} allow {', '.join(sorted(allowed)) or 'no CA'}, "
                                     f"not {issuer}, the spec's ACME CA: renewals will fail",
                    f"publish {hostname}. IN CAA 0 issue \"{issuer}\"")
        return
    yield ok(CHECK, hostname, f"CAA at {where} allows {', '.join(sorted(allowed))}")
