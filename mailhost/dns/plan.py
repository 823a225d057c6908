"""Diff desired record sets against a zone's records: Create / Update / Delete, conflicts, safety.

Ownership decides everything here. A record is ours when its ownership tag (a Cloudflare comment,
an `_mailhost` TXT marker elsewhere; see providers/base.py) names our owner. We change or delete
only our records. A record of someone else's at a name and type we want is a conflict, never
overwritten, unless the spec's `dns.adopt` lists it. Records at names and types we do not want are
not looked at at all, except ours, which are deleted when the spec no longer wants them.

TTLs are compared with what the provider can keep (`TtlRules`), so a provider that stores a TTL its own
way is no perpetual diff: a TTL outside the provider's documented range is planned at its nearest limit;
a server that caps TTLs (BIND's `max-zone-ttl`) shows it by storing every one of our records at the same
lower TTL, and that cap is then planned too; and where a TTL belongs to a whole record set (everywhere but
Cloudflare), a set we share with others' records keeps their TTL. Each such adjustment is said once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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


@dataclass(frozen=True)
class TtlRules:
    """What a provider does with TTLs: the range it accepts, and whether each value has its own TTL."""
    minimum: int = 0
    maximum: int = 2 ** 31 - 1
    per_value: bool = False  # Cloudflare: yes; DNS itself (RFC 2181) and Route53: one TTL per record set


@dataclass
class ZonePlan:
    zone: str
    changes: list[Change]
    conflicts: list[Conflict]
    pending: list[Pending]
    existing_count: int  # records read from the zone, ownership markers left out (Route53: those around our names)
    notes: list[str] = field(default_factory=list)  # TTLs planned otherwise than the spec says, and why

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
        return [f"  note: {note}" for note in self.notes] + ([i.describe(limit) for i in items] or ["  (no changes)"])

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> dict:
        def values(records: Iterable) -> list[str]:
            return sorted(show(r) for r in records)
        return {
            "zone": self.zone,
            "existing_records": self.existing_count,
            "notes": self.notes,
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
         adopt: Iterable[str] = (), known_elsewhere: Iterable[tuple[str, str]] = (),
         ttl_rules: TtlRules = TtlRules()) -> ZonePlan:
    """Plan the changes that make `zone` hold `desired`, touching only records `owner` owns (or adopts).
    `known_elsewhere`: name/type pairs that exist or get a value in other zones (for `requires`)."""
    adopt = set(adopt)
    at: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in existing:
        at[record.name, record.rdtype].append(record)
    plan = ZonePlan(zone, [], [], [], len(existing))
    wanted = {d.key for d in desired}
    known = {d.key for d in desired if d.rdatas is not None} | set(at) | set(known_elsewhere)
    desired = [_within_range(want, ttl_rules, plan) for want in desired]
    cap = _server_cap(desired, at, owner, ttl_rules)
    for want in desired:
        here = at.get(want.key, [])
        mine = [r for r in here if want.claims(r.rdata)]
        kept = tuple(r for r in here if not want.claims(r.rdata))
        want = _ttl_kept(want, kept, cap, ttl_rules, plan)
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


def _within_range(want: RecordSet, rules: TtlRules, plan: ZonePlan) -> RecordSet:
    """The spec's TTL moved into the range the provider accepts (documented limits)."""
    ttl = min(max(want.ttl, rules.minimum), rules.maximum)
    if ttl != want.ttl:
        plan.note(f"ttl {want.ttl} planned as {ttl}: the provider keeps TTLs of {rules.minimum}-{rules.maximum} s")
    return replace(want, ttl=ttl)


def _server_cap(desired: list[RecordSet], at: dict[tuple[str, str], list[Record]], owner: str,
                rules: TtlRules) -> int | None:
    """A cap the server applies to TTLs, as it shows: every one of our sets (two at least) that holds what we
    want holds it at min(wanted, C), for one C below some wanted TTL. One set of ours at another TTL than
    the rest, or a lone set, is drift to repair, not a cap. A set shared with others' records has their TTL
    where a set has one TTL, and says nothing about a cap."""
    stored = []
    for want in desired:
        here = at.get(want.key, [])
        if not rules.per_value and any(not want.claims(r.rdata) for r in here):
            continue
        ours = [r for r in here if r.owner == owner and want.claims(r.rdata)]
        if ours and want.rdatas is not None and {r.rdata for r in ours} == want.rdatas:
            stored.append((want.ttl, {r.ttl for r in ours}))
    lower = {ttl for wanted, ttls in stored for ttl in ttls if ttl < wanted}
    if len(stored) < 2 or len(lower) != 1:
        return None
    cap = lower.pop()
    return cap if all(ttls == {min(wanted, cap)} for wanted, ttls in stored) else None


def _ttl_kept(want: RecordSet, kept: tuple[Record, ...], cap: int | None, rules: TtlRules,
              plan: ZonePlan) -> RecordSet:
    """The TTL to plan for `want`: the server's cap, and where a record set has one TTL, the TTL of others'
    records sharing it (theirs is not ours to change)."""
    ttl = want.ttl
    if cap is not None and cap < ttl:
        plan.note(f"ttl {ttl} stored as {cap} by the server (its maximum): planned as {cap}")
        ttl = cap
    if kept and not rules.per_value and kept[0].ttl != ttl:
        plan.note(f"{want.name} {want.rdtype} is shared with records not ours: it keeps their ttl "
                  f"{kept[0].ttl} (one TTL per record set)")
        ttl = kept[0].ttl
    return replace(want, ttl=ttl)
