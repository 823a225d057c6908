"""CAA (RFC 8659): which CAs may issue for the host name. The records that count are the first CAA RRset
found climbing from the name towards the root; if they leave out our ACME CA, renewals fail, and if they leave
out the CA of the certificate being served, that CA may not reissue it (which public testers flag)."""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.rdata
from cryptography import x509

from mailhost.dns.records import rdata

from ..result import Result, error, ok, timeout, warn
from .lookup import Lookup, LookupTimeout

CHECK = "dns.caa"

# The CAA identity (each CA documents its own) of the CAs a certificate names by organization in its issuer.
CA_IDENTITIES = {"let's encrypt": "letsencrypt.org", "google trust services": "pki.goog",
                 "google trust services llc": "pki.goog", "zerossl": "sectigo.com", "sectigo limited": "sectigo.com",
                 "buypass as-983163327": "buypass.com", "ssl corporation": "ssl.com"}


def issuer_identity(cert: x509.Certificate) -> str | None:
    """The CAA identity of the CA that issued `cert`, when it is one of the CAs known here."""
    for attribute in cert.issuer.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME):
        if (identity := CA_IDENTITIES.get(str(attribute.value).lower())):
            return identity
    return None


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


def check_caa(hostname: str, issuer: str | None, lookup: Lookup,
              served: x509.Certificate | None = None) -> Iterable[Result]:
    """The CAA set governing `hostname` against the spec's ACME CA (`issuer`) and the CA of the certificate
    `served` on port 25 (when its CAA identity is known here)."""
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
    listed = ", ".join(sorted(allowed)) or "no CA"
    if issuer and issuer.lower() not in allowed:
        yield error(CHECK, hostname, f"the CAA records at {where} allow {listed}, not {issuer}, the spec's ACME CA: "
                                     "renewals will fail",
                    f"publish {hostname}. IN CAA 0 issue \"{issuer}\"")
        return
    in_use = issuer_identity(served) if served is not None else None
    if in_use and in_use not in allowed:
        yield error(CHECK, hostname, f"the CAA records at {where} allow {listed}, not {in_use}, whose certificate "
                                     f"port 25 serves: that CA may not reissue it",
                    f"set tls.acme_directory to the CA you use, or publish {hostname}. IN CAA 0 issue \"{in_use}\"")
        return
    yield ok(CHECK, hostname, f"CAA at {where} allows {listed}"
             + (f" (the served certificate's CA is {in_use})" if in_use else ""))
