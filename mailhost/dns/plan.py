"""Diff desired record sets against a zone's records: Create / Update / Delete, conflicts, safety.

Ownership decides everything here. A record is ours when its ownership tag (a Cloudflare comment,
an `_mailhost` TXT marker elsewhere; see providers/base.py) names our owner. We change or delete
only our records. A record of someone else's at a name and type we want is a conflict, never
overwritten, unless the spec's `dns.adopt` lists it. Records at names and types we do not want are
not looked at at all, except ours, which are deleted when the spec no longer wants them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.rdata

from .records import RecordSet, show

MIN_RECORDS_FOR_SAFETY = 10  # below this a zone is too small for a percentage to mean anything


@dataclass(frozen=True)
class Record:
    """One record as a provider holds it."""
    name: str
    rdtype: str
    ttl: int
    rdata: dns.rdata.Rdata
    owner: str | None = None  # the ownership tag on it (ours, another mail host's, or None: nobody's)
    ref: Any = field(default=None, compare=False, hash=False)  # the provider's handle, e.g. a record id


@dataclass(frozen=True)
class Change:
    action: Literal["create", "update", "delete"]
    name: str
    rdtype: str
    before: tuple[Record, ...]  # the records it replaces or removes (ours, or adopted)
    after: RecordSet | None  # what replaces them (None: delete)
    kept: tuple[Record, ...] = ()  # others' records at the same name and type, left as they are
    adopt: bool = False  # `before` was not ours: the spec said to take it over

    @property
    def ttl(self) -> int:
        return self.after.ttl if self.after else self.before[0].ttl

    def rrset_before(self) -> set[dns.rdata.Rdata]:
        """Everything at this name and type now (for providers that write whole RRsets)."""
        return {r.rdata for r in self.before + self.kept}

    def rrset_after(self) -> set[dns.rdata.Rdata]:
        return set(self.after.rdatas if self.after else ()) | {r.rdata for r in self.kept}

    def describe(self, limit: int | None = 72) -> str:
        old = ", ".join(sorted(show(r.rdata, limit) for r in self.before))
        new = ", ".join(sorted(show(v, limit) for v in self.after.rdatas)) if self.after else ""
        where = f"{self.name} {self.rdtype}"
        if self.action == "create":
            return f"+ create {where} {new} (ttl {self.ttl})"
        if self.action == "delete":
            return f"- delete {where} {old}"
        ttl = f" (ttl {self.before[0].ttl} -> {self.ttl})" if self.before[0].ttl != self.ttl else ""
        return f"~ update {where} {old} -> {new}{ttl}{' (adopted)' if self.adopt else ''}"


@dataclass(frozen=True)
class Conflict:
    desired: RecordSet
    existing: tuple[Record, ...]
    reason: str

    def describe(self, limit: int | None = 72) -> str:
        found = ", ".join(sorted(show(r.rdata, limit) for r in self.existing))
        return (f"! conflict {self.desired.name} {self.desired.rdtype}: {found} {self.reason}; to take it over "
                f"add '{self.desired.name} {self.desired.rdtype}' to dns.adopt")


@dataclass(frozen=True)
class Pending:
    """A set whose value only the configured host can tell (its DKIM key, its address)."""
    desired: RecordSet
    exists: bool
    waits_for: str = ""  # a value known, but the record needs another one first

    def describe(self, limit: int | None = 72) -> str:
        state = "exists, kept until then" if self.exists else "will be created"
        what = f"waits for {self.waits_for}" if self.waits_for else "known after apply"
        return f"? pending {self.desired.name} {self.desired.rdtype}: {what} ({state}; {self.desired.purpose})"


@dataclass
class ZonePlan:
    zone: str
    changes: list[Change]
    conflicts: list[Conflict]
    pending: list[Pending]
    existing_count: int  # records in the zone (not counting ownership markers)

    @property
    def touched(self) -> int:
        """Existing records this plan rewrites or removes."""
        return sum(len(c.before) for c in self.changes if c.action != "create")

    def safety_problem(self, max_percent: int) -> str | None:
        if self.existing_count < MIN_RECORDS_FOR_SAFETY or not self.touched:
            return None
        share = 100 * self.touched / self.existing_count
        if share <= max_percent:
            return None
        return (f"zone {self.zone}: the plan updates or deletes {self.touched} of {self.existing_count} existing "
                f"records ({share:.0f}% > dns.max_change_percent {max_percent}%); check it, then use --force")

    def lines(self, limit: int | None = 72) -> list[str]:
        items = [*self.conflicts, *self.changes, *self.pending]
        return [i.describe(limit) for i in items] or ["  (no changes)"]

    def to_json(self) -> dict:
        def values(records: Iterable) -> list[str]:
            return sorted(show(r) for r in records)
        return {
            "zone": self.zone,
            "existing_records": self.existing_count,
            "changes": [{"action": c.action, "name": c.name, "type": c.rdtype, "ttl": c.ttl, "adopt": c.adopt,
                         "before": values(r.rdata for r in c.before),
                         "after": values(c.after.rdatas) if c.after else []} for c in self.changes],
            "conflicts": [{"name": c.desired.name, "type": c.desired.rdtype, "reason": c.reason,
                           "existing": values(r.rdata for r in c.existing),
                           "wanted": values(c.desired.rdatas or ())} for c in self.conflicts],
            "pending": [{"name": p.desired.name, "type": p.desired.rdtype, "exists": p.exists,
                         "purpose": p.desired.purpose} for p in self.pending],
        }


def diff(zone: str, desired: list[RecordSet], existing: list[Record], owner: str,
         adopt: Iterable[str] = (), known_elsewhere: Iterable[tuple[str, str]] = ()) -> ZonePlan:
    """Plan the changes that make `zone` hold `desired`, touching only records `owner` owns (or adopts).
    `known_elsewhere`: name/type pairs that exist or get a value in other zones (for `requires`)."""
    adopt = set(adopt)
    at: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in existing:
        at[record.name, record.rdtype].append(record)
    plan = ZonePlan(zone, [], [], [], len(existing))
    wanted = {d.key for d in desired}
    known = {d.key for d in desired if d.rdatas is not None} | set(at) | set(known_elsewhere)
    for want in desired:
        here = at.get(want.key, [])
        mine = [r for r in here if want.claims(r.rdata)]
        kept = tuple(r for r in here if not want.claims(r.rdata))
        foreign = [r for r in mine if r.owner != owner]
        cname = [r for r in at.get((want.name, "CNAME"), []) if want.rdtype != "CNAME"]
        if want.rdatas is None:
            plan.pending.append(Pending(want, bool(mine)))
        elif want.requires and not known & set(want.requires) and not mine:
            plan.pending.append(Pending(want, False, " or ".join(" ".join(k) for k in want.requires)))
        elif cname:
            plan.conflicts.append(Conflict(want, tuple(cname), "is a CNAME at this name (no other type may exist)"))
        elif foreign and f"{want.name} {want.rdtype}" not in adopt:
            whose = {r.owner for r in foreign} - {None}
            reason = f"belongs to mail host '{whose.pop()}'" if whose else "was not made by mailhost"
            plan.conflicts.append(Conflict(want, tuple(foreign), reason))
        elif not mine:
            plan.changes.append(Change("create", want.name, want.rdtype, (), want, kept))
        elif {r.rdata for r in mine} != want.rdatas or any(r.ttl != want.ttl for r in mine) or foreign:
            plan.changes.append(Change("update", want.name, want.rdtype, tuple(mine), want, kept, bool(foreign)))
    for key, records in sorted(at.items()):
        ours = tuple(r for r in records if r.owner == owner)
        if key not in wanted and ours:
            others = tuple(r for r in records if r.owner != owner)
            plan.changes.append(Change("delete", key[0], key[1], ours, None, others))
    return plan
