"""DNSSEC of the zones: is each signed, does its parent hold a DS for its key, and if not, which DS to add.

Signing itself is the provider's (Cloudflare and Route53 sign when asked; an RFC 2136 server signs
by its own configuration). The parent's DS is what makes the signatures count, and only the
registrar (or the parent zone's operator) can publish it, so the report names the exact DS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from .providers import Provider, Signing, Zone


def normal_ds(text: str) -> str:
    """`keytag alg digesttype digest` with the digest in one lowercase word, for comparing."""
    tag, alg, kind, *digest = text.split()
    return f"{int(tag)} {int(alg)} {int(kind)} {''.join(digest).lower()}"


def ds_of_keys(zone: str, dnskeys: Iterable) -> tuple[str, ...]:
    """SHA-256 DS of every key-signing key (SEP flag) of a DNSKEY RRset."""
    origin = dns.name.from_text(zone)
    return tuple(normal_ds(dns.dnssec.make_ds(origin, key, "SHA256").to_text())
                 for key in dnskeys if key.flags & 0x0001)


def parent_ds(zone: str, resolvers: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The DS records the world sees for `zone` (None: the question could not be answered)."""
    resolver = dns.resolver.Resolver(configure=not resolvers)
    if resolvers:
        resolver.nameservers = list(resolvers)
    resolver.lifetime = 5
    try:
        answer = resolver.resolve(zone, "DS")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return ()
    except dns.exception.DNSException:
        return None
    return tuple(normal_ds(rd.to_text()) for rd in answer)


@dataclass(frozen=True)
class SigningReport:
    zone: str
    signed: bool
    status: str
    ds: tuple[str, ...]  # what the parent should hold
    at_parent: tuple[str, ...] | None  # what it holds (None: unknown)
    note: str = ""

    @property
    def parent_ok(self) -> bool:
        return bool(self.at_parent and set(map(normal_ds, self.ds)) & set(self.at_parent))

    def lines(self) -> list[str]:
        head = f"zone {self.zone}: " + (f"signed ({self.status})" if self.signed else f"not signed ({self.status})")
        if self.note:
            head += f"; {self.note}"
        if not self.signed:
            return [head]
        if self.parent_ok:
            return [head + "; DS at the parent matches"]
        found = "could not be read" if self.at_parent is None else \
            ("has none" if not self.at_parent else "has " + ", ".join(self.at_parent) + " (no match)")
        return [head + f"; the parent {found}. Publish at the registrar:"] + \
            [f"    {self.zone}. IN DS {ds}" for ds in self.ds]

    def to_json(self) -> dict:
        return {"zone": self.zone, "signed": self.signed, "status": self.status, "ds": list(self.ds),
                "at_parent": None if self.at_parent is None else list(self.at_parent),
                "parent_ok": self.parent_ok, "note": self.note}


def report(provider: Provider, zone: Zone, enable: bool, resolvers: Sequence[str] = ()) -> SigningReport:
    signing: Signing = provider.signing(zone, enable)
    return SigningReport(zone.name, signing.signed, signing.status, tuple(normal_ds(d) for d in signing.ds),
                         parent_ds(zone.name, resolvers) if signing.signed else None, signing.note)
