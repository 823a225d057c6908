"""Plan and apply a spec's records across its zones: read everything first, write only when all is safe.

Order of work, so that bad input never leaves a half-written zone: find every zone (a missing zone
stops the run before any write), read every zone, diff, refuse on conflicts or unsafe plans, and only
then write zone by zone (each write atomic where the provider can). A write whose outcome is unknown
(server error, timeout) is not replayed blindly: the zone is read again and planned again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from mailhost.spec import Spec

from .plan import Record, ZonePlan, diff
from .providers import DnsError, Provider, WriteUncertain, Zone
from .records import HostFacts, RecordSet, desired_records

WRITE_ATTEMPTS = 3


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

    def desired_by_zone(self, facts: HostFacts) -> dict[str, list[RecordSet]]:
        by_zone: dict[str, list[RecordSet]] = defaultdict(list)
        for record_set in desired_records(self.spec, facts):
            zone = self.spec.zone_of(record_set.name)
            if zone is None:
                raise DnsError(f"record {record_set.name} {record_set.rdtype} is outside the DNS zones "
                               f"({', '.join(self.spec.dns_zones)}); add its zone to dns.zones")
            by_zone[zone].append(record_set)
        return {zone: by_zone.get(zone, []) for zone in self.spec.dns_zones}

    def _diff(self, zone: Zone, desired: list[RecordSet], existing: list[Record],
              known: set[tuple[str, str]]) -> ZonePlan:
        return diff(zone.name, desired, existing, self.spec.dns_owner, self.spec.dns.adopt, known)

    def plan(self, facts: HostFacts) -> list[ZoneState]:
        """Read every zone and diff it (no writes). Missing zones fail here, before anything changes."""
        wanted = self.desired_by_zone(facts)
        zones = {name: self.provider.zone(name) for name in wanted}
        existing = {name: self.provider.records(zone) for name, zone in zones.items()}
        self._known = {d.key for sets in wanted.values() for d in sets if d.rdatas is not None} | \
            {(r.name, r.rdtype) for records in existing.values() for r in records}
        return [ZoneState(zones[name], desired, self._diff(zones[name], desired, existing[name], self._known))
                for name, desired in wanted.items()]

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

    def apply(self, states: list[ZoneState], force: bool = False) -> list[ZoneState]:
        """Write the planned changes; returns the final state of each zone (re-planned after uncertain writes).
        Pending sets (values the host has not told yet) are left for a later run."""
        self.check(states, force)
        done = []
        for state in states:
            for attempt in range(WRITE_ATTEMPTS):
                if not state.plan.changes:
                    break
                try:
                    self.provider.apply(state.zone, state.plan.changes)
                    break
                except WriteUncertain as exc:
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise DnsError(f"zone {state.zone.name}: writes keep failing ({exc}); the zone is as "
                                       f"the next plan shows") from None
                    plan = self._diff(state.zone, state.desired, self.provider.records(state.zone), self._known)
                    state = ZoneState(state.zone, state.desired, plan)
                    self.check([state], force)
            done.append(state)
        return done
