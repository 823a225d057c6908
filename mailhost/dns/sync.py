"""Plan and apply a spec's records across its zones: read everything first, write only when all is safe.

Order of work, so that bad input never leaves a half-written zone: find every zone (a missing zone
stops the run before any write), read every zone, diff, refuse on conflicts or unsafe plans, and only
then write zone by zone (each write atomic where the provider can). A write whose outcome is unknown
(server error, timeout) is not replayed blindly: the zone is read again and planned again.

Each zone is read once per run. A deploy plans while pyinfra prepares and writes twice later (the records
known at once, then the keys the host made): both writes are planned against that first reading, kept up to
date with what this run wrote. The providers' writes say exactly what they replace (RFC 2136 prerequisites,
Route53's DELETE of the set as listed, Cloudflare's record ids), so a zone someone changed meanwhile refuses
the write and is read and planned again. A zone is read again before a plan that wants names its reading did
not cover, or that changes a set this run already wrote (a provider's handles of what it wrote are unknown).

Zones are independent, so reads, writes and signing reports run for several zones at once, as many
as the provider's API allows (`Provider.parallel_zones`): 100 zones are not 100 round trips in a row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from mailhost.spec import Spec

from .plan import Record, ZonePlan, diff
from .providers import ConcurrentChange, DnsError, Provider, WriteUncertain, Zone, ZoneNotFound, make_provider
from .records import HostFacts, RecordSet, desired_records
from .signing import SigningReport, report

WRITE_ATTEMPTS = 3
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Reading:
    """A zone as last read, kept up to date with this run's writes to it."""
    zone: Zone
    records: list[Record]
    covers: set[tuple[str, str]]  # the name/type pairs the reading was asked for
    written: set[tuple[str, str]] = field(default_factory=set)  # sets written since (held as written)


@dataclass
class ZoneState:
    zone: Zone
    desired: list[RecordSet]
    plan: ZonePlan


class DnsSync:
    def __init__(self, spec: Spec, provider: Provider):
        self.spec = spec
        self.provider = provider
        self._known: set[tuple[str, str]] = set()  # name/type pairs that exist or get a value, in any zone
        self._zones: dict[str, Reading] = {}  # each zone as read, with what this run wrote since

    @classmethod
    def for_spec(cls, spec: Spec) -> DnsSync:
        """The sync through the provider the spec names, its credentials read; DnsError when one is missing."""
        return cls(spec, make_provider(spec.dns.provider, spec.dns_owner, spec.base_dir))

    def desired_by_zone(self, facts: HostFacts) -> dict[str, list[RecordSet]]:
        by_zone: dict[str, list[RecordSet]] = defaultdict(list)
        for record_set in desired_records(self.spec, facts):
            zone = self.spec.zone_of(record_set.name)
            if zone is None:
                raise DnsError(f"record {record_set.name} {record_set.rdtype} is outside the DNS zones "
                               f"({', '.join(self.spec.dns_zones)}); add its zone to dns.zones")
            by_zone[zone].append(record_set)
        return {zone: by_zone.get(zone, []) for zone in self.spec.dns_zones}

    def each_zone(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`work` for each item (one per zone), in order, several at once; the first error is raised
        once every zone's work has ended (a zone is never left mid-write)."""
        with ThreadPoolExecutor(max_workers=self.provider.parallel_zones) as pool:
            futures = [pool.submit(work, item) for item in items]
        return [future.result() for future in futures]

    def _diff(self, zone: Zone, desired: list[RecordSet], existing: list[Record],
              known: set[tuple[str, str]]) -> ZonePlan:
        return diff(zone.name, desired, existing, self.spec.dns_owner, self.spec.dns.adopt, known,
                    self.provider.ttl_rules)

    def plan(self, facts: HostFacts) -> list[ZoneState]:
        """Diff every zone against its reading (no writes), reading the zones this run has not read yet, or
        whose reading no longer serves (see the module's docstring). Missing zones fail here, before anything
        changes."""
        wanted = self.desired_by_zone(facts)
        self._read_zones(wanted, [name for name in wanted if name not in self._zones
                                  or not {d.key for d in wanted[name]} <= self._zones[name].covers])
        states = self._diff_all(wanted)
        stale = [s.zone.name for s in states if {(c.name, c.rdtype) for c in s.plan.changes}
                 & self._zones[s.zone.name].written]
        if stale:
            self._read_zones(wanted, stale)
            states = self._diff_all(wanted)
        return states

    def _read_zones(self, wanted: dict[str, list[RecordSet]], names: list[str]) -> None:
        if not names:
            return
        known = {name: self._zones[name].zone for name in names if name in self._zones}
        unknown = [name for name in names if name not in known]
        if unknown:
            known |= self.provider.zones(unknown) or dict(zip(unknown, self.each_zone(self.provider.zone, unknown)))
        self.each_zone(lambda name: self._read(known[name], wanted[name]), names)

    def _diff_all(self, wanted: dict[str, list[RecordSet]]) -> list[ZoneState]:
        self._known = {d.key for sets in wanted.values() for d in sets if d.rdatas is not None} | \
            {(r.name, r.rdtype) for name in wanted for r in self._zones[name].records}
        return [ZoneState(self._zones[name].zone, wanted[name],
                          self._diff(self._zones[name].zone, wanted[name], self._zones[name].records, self._known))
                for name in wanted]

    def _read(self, zone: Zone, desired: list[RecordSet]) -> Reading:
        """Read the zone (found anew when its handle, remembered from an earlier run, is gone) and keep it."""
        keys = {d.key for d in desired}
        try:
            records = self.provider.records(zone, keys)
        except ZoneNotFound:
            if not self.provider.forget(zone):
                raise
            zone = self.provider.zone(zone.name)
            records = self.provider.records(zone, keys)
        self._zones[zone.name] = Reading(zone, records, keys)
        return self._zones[zone.name]

    def check(self, states: list[ZoneState], force: bool = False) -> None:
        """Refuse the whole run on any conflict or (unless forced) any unsafe zone plan."""
        problems = []
        for state in states:
            problems += [f"zone {state.zone.name}: {c.describe(None)[2:]}" for c in state.plan.conflicts]
            unsafe = state.plan.safety_problem(self.spec.dns.max_change_percent)
            if unsafe and not force:
                problems.append(unsafe)
        if problems:
            raise DnsError("DNS plan refused, nothing written:\n  " + "\n  ".join(problems))

    def writes(self, states: list[ZoneState]) -> bool:
        """Will `apply` write anything: a change, or the provider's own upkeep (Route53's names index)?"""
        return any(state.plan.changes or self.provider.upkeep(state.zone) for state in states)

    def apply(self, states: list[ZoneState], force: bool = False) -> list[ZoneState]:
        """Write the planned changes; returns the final state of each zone (re-planned after uncertain writes).
        Pending sets (values the host has not told yet) are left for a later run."""
        self.check(states, force)
        return self.each_zone(lambda state: self._apply_zone(state, force), states)

    def _apply_zone(self, state: ZoneState, force: bool) -> ZoneState:
        for attempt in range(WRITE_ATTEMPTS):
            if not state.plan.changes and not self.provider.upkeep(state.zone):
                break
            try:
                self.provider.apply(state.zone, state.plan.changes)
                self._wrote(state)
                break
            except (WriteUncertain, ConcurrentChange) as exc:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise DnsError(f"zone {state.zone.name}: writes keep failing ({exc}); the zone is as "
                                   f"the next plan shows") from None
                reading = self._read(state.zone, state.desired)
                plan = self._diff(reading.zone, state.desired, reading.records, self._known)
                state = ZoneState(reading.zone, state.desired, plan)
                self.check([state], force)
        return state

    def _wrote(self, state: ZoneState) -> None:
        """Keep the zone's reading as the write left it: the changed sets replaced by what was written."""
        reading = self._zones[state.zone.name]
        changed = {(c.name, c.rdtype) for c in state.plan.changes}
        records = [r for r in reading.records if (r.name, r.rdtype) not in changed]
        for change in state.plan.changes:
            records += change.kept
            records += [Record(change.name, change.rdtype, change.ttl, rd, self.spec.dns_owner)
                        for rd in (change.after.rdatas if change.after else ())]
        reading.records, reading.written = records, reading.written | changed

    def signing_reports(self, states: list[ZoneState], enable: bool) -> list[SigningReport]:
        """DNSSEC state of each zone (signing turned on first where `enable` and the provider signs)."""
        return self.each_zone(lambda state: report(self.provider, state.zone, enable, self.spec.dns.resolvers),
                              states)
