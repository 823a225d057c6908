"""Desired records: the spec plus what only the host knows -> record sets, one function per kind.

Names are lowercase, without the trailing dot. Values are dnspython rdata in canonical form, so
comparing a desired set with what a provider returns is comparing DNS data, not strings. A value
that only the host can tell (its DKIM public key, its address when the spec has none) is `None`
until the host has been read: the plan shows such a set as "known after apply".

Adding a record type is adding a function to `RECORD_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import base64
import hashlib

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from mailhost import web
from mailhost.spec import Domain, Spec

TXT_CHUNK = 255  # the most bytes one TXT character-string can hold


def rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    """Parse one record value in zone-file syntax (names relative to the root), canonically."""
    return canonical(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False))


def txt(value: str | bytes) -> dns.rdata.Rdata:
    """A TXT record holding `value`, split into 255-byte strings (how long DKIM keys are stored)."""
    data = value.encode() if isinstance(value, str) else value
    chunks = [data[i:i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def txt_value(rd: dns.rdata.Rdata) -> str:
    """The text a receiver sees: the strings of a TXT record joined."""
    return b"".join(rd.strings).decode(errors="replace")


def canonical(rd: dns.rdata.Rdata) -> dns.rdata.Rdata:
    """One form per meaning: TXT strings re-split at 255 bytes (providers split long values their own way;
    DKIM, SPF and DMARC readers join them), names lowercase."""
    if rd.rdtype == dns.rdatatype.TXT:
        return txt(b"".join(rd.strings))
    wire = rd.to_digestable(dns.name.root)
    return dns.rdata.from_wire(rd.rdclass, rd.rdtype, wire, 0, len(wire))


def show(rd: dns.rdata.Rdata, limit: int | None = None) -> str:
    """A value for people: TXT joined into one quoted string, long values shortened in the middle."""
    text = f'"{txt_value(rd)}"' if rd.rdtype == dns.rdatatype.TXT else rd.to_text()
    if limit and len(text) > limit:
        keep = (limit - 1) // 2
        text = text[:keep] + "…" + text[-keep:]
    return text


@dataclass(frozen=True)
class RecordSet:
    """The records mailhost wants at one name and type."""
    name: str
    rdtype: str
    ttl: int
    rdatas: frozenset[dns.rdata.Rdata] | None  # None: known only once the host is configured
    purpose: str  # shown in plans: what the record is for
    claim: str | None = None  # TXT sharing a name with others' records (SPF at the apex): ours start with this
    requires: tuple[tuple[str, str], ...] = ()  # one of these must exist first (an MX needs its target's address)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.rdtype

    def claims(self, rd: dns.rdata.Rdata) -> bool:
        """Is this existing record one this set manages (SPF: only the v=spf1 string, not site verifications)?"""
        return self.claim is None or txt_value(rd).startswith(self.claim)


@dataclass(frozen=True)
class HostFacts:
    """What the host tells: its public addresses and DKIM public keys (None: not read yet)."""
    addresses: tuple[str, ...] | None = None
    dkim_keys: Mapping[tuple[str, str, str], str] | None = None  # (domain, selector, algorithm) -> p= (base64)
    tls_keys: Mapping[str, str] | None = None  # certificate name (host name) -> base64 SubjectPublicKeyInfo


def _set(spec: Spec, name: str, rdtype: str, values: Iterable[dns.rdata.Rdata] | None, purpose: str,
         claim: str | None = None, requires: tuple[tuple[str, str], ...] = ()) -> RecordSet:
    return RecordSet(name, rdtype, spec.dns.ttl, None if values is None else frozenset(values), purpose, claim,
                     requires)


def mx(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    # An MX whose target has no address is broken (and BIND refuses it when the target is in the zone).
    target = ((spec.hostname, "A"), (spec.hostname, "AAAA")) if spec.dns.host_addresses else ()
    yield _set(spec, domain.name, "MX", [rdata("MX", f"10 {spec.hostname}.")], "mail for the domain goes to the host",
               requires=target)


def spf(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    yield _set(spec, domain.name, "TXT", [txt(domain.spf or spec.dns.spf)], "SPF: who may send as the domain",
               claim="v=spf1")


def dkim(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    """The domain's keys the spec names (known once the host made them), and every other key of the domain still on
    the host: one a rotation replaced, published until `dkim.retention` is over (`mailhost.dkim_keys`)."""
    wanted = spec.dkim_keys(domain)
    names = {s for s, _ in wanted}  # (a selector moved to the other algorithm has one record: the spec's key)
    leaving = sorted((s, a) for d, s, a in (facts.dkim_keys or {}) if d == domain.name and s not in names)
    for selector, algorithm in wanted + leaving:
        key = None if facts.dkim_keys is None else facts.dkim_keys.get((domain.name, selector, algorithm))
        values = None if key is None else [txt(f"v=DKIM1; k={algorithm}; p={key}")]
        kind = "Ed25519" if algorithm == "ed25519" else "RSA"
        yield _set(spec, f"{selector}._domainkey.{domain.name}", "TXT", values,
                   f"DKIM {kind} key '{selector}' (made on the host)" if (selector, algorithm) in wanted else
                   f"DKIM {kind} key '{selector}' (rotated out: published until dkim.retention is over)")


def dmarc_rua(spec: Spec, domain: Domain) -> list[str]:
    """Where DMARC reports go: the spec's addresses, else postmaster@ the domain (always ours: `Spec.role_aliases`)."""
    return spec.dmarc_of(domain).rua or [f"postmaster@{domain.name}"]


def dmarc_value(spec: Spec, domain: Domain) -> str:
    """The domain's DMARC record (alignment tags only where strict: relaxed is what their absence means)."""
    policy = spec.dmarc_of(domain)
    tags = [("v", "DMARC1"), ("p", policy.policy)]
    if policy.subdomain_policy:
        tags.append(("sp", policy.subdomain_policy))
    tags += [(tag, "s") for tag, alignment in (("adkim", policy.dkim_alignment), ("aspf", policy.spf_alignment))
             if alignment == "strict"]
    tags.append(("rua", ",".join(f"mailto:{a}" for a in dmarc_rua(spec, domain))))
    return "; ".join(f"{tag}={value}" for tag, value in tags)


def dmarc(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    yield _set(spec, f"_dmarc.{domain.name}", "TXT", [txt(dmarc_value(spec, domain))],
               "DMARC policy and where reports go")


def dmarc_report_authorization(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    """RFC 7489 7.1: a domain receiving another domain's reports says it accepts them."""
    for target in sorted({a.split("@")[1] for a in dmarc_rua(spec, domain)} - {domain.name}):
        if target in spec.domain_names:
            yield _set(spec, f"{domain.name}._report._dmarc.{target}", "TXT", [txt("v=DMARC1")],
                       f"{target} accepts DMARC reports about {domain.name}")


def host_addresses(spec: Spec, facts: HostFacts) -> Iterable[RecordSet]:
    if not spec.dns.host_addresses:
        return
    addresses = spec.given_addresses or facts.addresses
    for rdtype, version in (("A", "."), ("AAAA", ":")):
        if addresses is None:
            yield _set(spec, spec.hostname, rdtype, None, "the host's address (read from the host)")
            continue
        values = [rdata(rdtype, a) for a in addresses if version in a]
        if values:
            yield _set(spec, spec.hostname, rdtype, values, "the host's address")


def tlsa_value(spki_der: bytes) -> str:
    """TLSA "3 1 1" (DANE-EE, the public key, SHA-256) of a key: survives renewals that keep the key."""
    return "3 1 1 " + hashlib.sha256(spki_der).hexdigest()


def tlsa(spec: Spec, facts: HostFacts) -> Iterable[RecordSet]:
    """DANE for mail to us (RFC 7672): senders that validate check the certificate on port 25 against it."""
    keys = [None if facts.tls_keys is None else facts.tls_keys.get(slot) for slot in spec.certificate_slots]
    values = None if None in keys else [rdata("TLSA", tlsa_value(base64.b64decode(key))) for key in keys]
    yield _set(spec, f"_25._tcp.{spec.hostname}", "TLSA", values,
               "DANE: the keys of the certificate on port 25, in use and standby (made on the host)")


def caa(spec: Spec, facts: HostFacts) -> Iterable[RecordSet]:
    """CAA (RFC 8659): only the spec's ACME CA may issue certificates for the host name."""
    issuer = spec.caa_issuer
    if issuer:
        yield _set(spec, spec.hostname, "CAA", [rdata("CAA", f'0 issue "{issuer}"')],
                   f"CAA: only {issuer} issues certificates for the host name")


def tls_reporting(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    """TLS-RPT (RFC 8460): where senders report failed TLS (DANE, MTA-STS) to the domain."""
    addresses = spec.dns.tls_reports or dmarc_rua(spec, domain)
    yield _set(spec, f"_smtp._tls.{domain.name}", "TXT",
               [txt("v=TLSRPTv1; rua=" + ",".join(f"mailto:{a}" for a in addresses))],
               "TLS-RPT: where senders report TLS failures")


def mta_sts(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    """MTA-STS (RFC 8461): the policy's host name, and the record whose id tells senders the policy changed."""
    if spec.features.mta_sts == "off":
        return
    yield _set(spec, f"mta-sts.{domain.name}", "CNAME", [rdata("CNAME", f"{spec.hostname}.")],
               "MTA-STS: where the policy is served (HTTPS)")
    yield _set(spec, f"_mta-sts.{domain.name}", "TXT", [txt(f"v=STSv1; id={web.policy_id(web.policy(spec))}")],
               "MTA-STS: a policy exists (its id changes with it)")


def client_autoconfig(spec: Spec, domain: Domain, facts: HostFacts) -> Iterable[RecordSet]:
    """Where mail clients find the servers from an address alone: SRV (RFC 6186, RFC 8314) and autoconfig.<domain>."""
    if not spec.features.autoconfig:
        return
    yield _set(spec, f"autoconfig.{domain.name}", "CNAME", [rdata("CNAME", f"{spec.hostname}.")],
               "client autoconfig file (HTTPS)")
    for label, value in web.srv_records(spec).items():
        yield _set(spec, f"{label}.{domain.name}", "SRV", [rdata("SRV", value)],
                   f"clients: {label.split('.')[0][1:]}" + (" not offered" if value.endswith(" .") else ""))


HostRecords = Callable[[Spec, HostFacts], Iterable[RecordSet]]
DomainRecords = Callable[[Spec, Domain, HostFacts], Iterable[RecordSet]]
RECORD_KINDS: list[DomainRecords] = [mx, spf, dkim, dmarc, dmarc_report_authorization, tls_reporting, mta_sts,
                                     client_autoconfig]
# The host name's own records, published when the host name is in one of our zones.
HOST_RECORD_KINDS: list[HostRecords] = [tlsa, caa]


def desired_records(spec: Spec, facts: HostFacts) -> list[RecordSet]:
    """Every record set mailhost publishes for this spec, host records first."""
    sets = list(host_addresses(spec, facts))
    if spec.zone_of(spec.hostname):
        for host_kind in HOST_RECORD_KINDS:
            sets.extend(host_kind(spec, facts))
    for domain in spec.domains:
        for kind in RECORD_KINDS:
            sets.extend(kind(spec, domain, facts))
    keys = [s.key for s in sets]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:  # two kinds wanting one name and type would overwrite each other
        raise ValueError(f"records computed twice: {duplicates}")
    return sets
