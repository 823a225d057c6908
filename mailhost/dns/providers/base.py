"""The interface every DNS provider implements, and the ownership markers of providers without tags.

A provider only moves records: it finds a zone, lists its records with their ownership, applies a
zone's changes (atomically where the API can), and reports/turns on DNSSEC signing. Deciding what to
change is `plan.diff`'s job, so every provider gets the same safety rules.

Ownership. Cloudflare records carry a comment. Route53 and RFC 2136 have nothing to tag a record
with, so (like octoDNS's `_owner` records) each managed name/type gets a TXT marker beside it:
`_mailhost.<type>.<name>` holding `mailhost; owner=<tag>` and, for sets that share their name
and type with others' records (SPF at the apex), `claim=<prefix>`: only the records starting with
that prefix are ours.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import dns.rdata

from mailhost.spec import DnsProvider

from ..plan import Change, Record, TtlRules
from ..records import txt, txt_value

MARKER_PREFIX = "_mailhost"
# DNSSEC and server-internal types: signed zones list them, nobody manages them by hand.
UNMANAGED_TYPES = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "TYPE65534"}


class DnsError(Exception):
    """A DNS problem the user must act on; the message names the zone or record."""


class ZoneNotFound(DnsError):
    pass


class ConcurrentChange(DnsError):
    """The zone changed between reading and writing; nothing was written. Plan again."""


class WriteUncertain(DnsError):
    """A write may or may not have happened (server error, timeout): re-read the zone before deciding."""


@dataclass
class Requests:
    """API calls made, for tests ("a re-run makes no writes") and benchmarks. Zones are worked on in
    parallel, so counting takes a lock."""
    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, write: bool) -> None:
        with self._lock:
            if write:
                self.writes += 1
            else:
                self.reads += 1


@dataclass(frozen=True)
class Zone:
    name: str
    id: str  # the provider's handle (Cloudflare zone id, Route53 hosted zone id, the zone name)


@dataclass(frozen=True)
class Signing:
    """DNSSEC state of a zone as its provider reports it."""
    zone: str
    signed: bool
    status: str  # the provider's word: active, pending, disabled, ...
    ds: tuple[str, ...] = ()  # DS records the parent must publish ("keytag alg digesttype digest")
    note: str = ""


class Provider(ABC):
    kind: ClassVar[str]
    # How many zones may be read or written at once: what the API's rate limit allows.
    parallel_zones: ClassVar[int] = 1
    # What it does with TTLs (the plan asks only for TTLs the provider keeps as asked).
    ttl_rules: ClassVar[TtlRules] = TtlRules()

    def __init__(self, config: DnsProvider, owner: str, base_dir: Path = Path(".")):
        self.config = config
        self.owner = owner
        self.base_dir = base_dir
        self.requests = Requests()

    def describe(self) -> str:
        """Where the records go, for plans and logs (never a credential)."""
        return self.kind

    @abstractmethod
    def zone(self, name: str) -> Zone:
        """Find the zone named `name`; ZoneNotFound if the provider does not have it."""

    def zones(self, names: Sequence[str]) -> dict[str, Zone] | None:
        """Find all of `names` at once where the API lists zones for fewer requests than finding each
        (ZoneNotFound as `zone`); None: find them one by one."""
        return None

    def forget(self, zone: Zone) -> bool:
        """`zone`'s handle came from an earlier run and the zone proved gone: forget it. True when there was
        one to forget (the zone is then found anew); a provider that remembers nothing answers False."""
        return False

    @abstractmethod
    def records(self, zone: Zone, wanted: Collection[tuple[str, str]] | None = None) -> list[Record]:
        """The zone's records with their owners, except DNSSEC records and ownership markers: every one, or
        with `wanted` (name, type) at least those at the wanted names and every one this owner owns (a
        provider whose API reads by name reads only those)."""

    def upkeep(self, zone: Zone) -> bool:
        """Does the zone, as last read, need a write of the provider's own when the plan has no changes?"""
        return False

    @abstractmethod
    def apply(self, zone: Zone, changes: Sequence[Change]) -> None:
        """Make the changes, all or none where the API allows; ConcurrentChange when the zone moved meanwhile."""

    @abstractmethod
    def signing(self, zone: Zone, enable: bool) -> Signing:
        """Report DNSSEC signing of the zone, turning it on first if `enable` and the provider signs."""


# -- ownership markers (providers without record tags) ----------------------------------------------
def marker_name(name: str, rdtype: str) -> str:
    return f"{MARKER_PREFIX}.{rdtype.lower()}.{name}"


def marker_rdata(owner: str, claim: str | None) -> dns.rdata.Rdata:
    return txt("; ".join(["mailhost", f"owner={owner}"] + ([f"claim={claim}"] if claim else [])))


_MARKER = re.compile(rf"^{MARKER_PREFIX}\.([a-z0-9]+)\.(.+)$")


def _parse_marker(rd: dns.rdata.Rdata) -> tuple[str, str | None] | None:
    words = txt_value(rd).split("; ")
    if words[0] != "mailhost":
        return None
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return (fields["owner"], fields.get("claim")) if "owner" in fields else None


def assign_owners(records: Iterable[Record]) -> list[Record]:
    """Turn a raw listing (markers included) into records with owners (markers left out)."""
    markers: dict[tuple[str, str], tuple[str, str | None]] = {}
    plain = []
    for record in records:
        m = _MARKER.match(record.name)
        parsed = _parse_marker(record.rdata) if m and record.rdtype == "TXT" else None
        if parsed:
            markers[m[2], m[1].upper()] = parsed
        elif record.rdtype not in UNMANAGED_TYPES:
            plain.append(record)
    owned = []
    for record in plain:
        owner, claim = markers.get((record.name, record.rdtype), (None, None))
        if owner and claim and not txt_value(record.rdata).startswith(claim):
            owner = None
        owned.append(Record(record.name, record.rdtype, record.ttl, record.rdata, owner, record.ref))
    return owned


def marker_changes(change: Change, owner: str) -> tuple[str, dns.rdata.Rdata | None]:
    """The marker write that goes with a change: (marker name, its new value, None = remove it)."""
    name = marker_name(change.name, change.rdtype)
    if change.after is None:
        return name, None
    return name, marker_rdata(owner, change.after.claim)
