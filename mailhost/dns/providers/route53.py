"""Route53: hosted zones through boto3, whole record sets per change, ownership in `_mailhost` TXT markers.

Route53 stores record *sets* (name and type -> one TTL, several values) and applies a change batch
all or nothing. A DELETE must repeat the set's exact current TTL and values, and a CREATE fails when
the set exists, so a batch built from one listing fails as a whole if the zone moved since: that is
how a concurrent edit is noticed (ConcurrentChange), with nothing written. Each record therefore
keeps, as its `ref`, the set exactly as listed (and its marker set), and DELETEs are sent from that.

Sets mailhost cannot write back (aliases, and weighted, latency, geo... sets, which carry a
SetIdentifier) are listed as one `Unmanageable` record each, owned by nobody: no desired value ever
equals it, so where mailhost wants that name and type the plan shows a conflict naming it instead of
overwriting it; and if one is adopted anyway, `apply` refuses before sending anything.

A sync reads a zone only around the names it plans for and the names its index lists
(`route53_names.py`): a few requests, however many records others keep in the zone. It finds the zone by
the ID an earlier run found (`route53_zones.py`), and by name only the first time and before a write.

DNSSEC (`route53_dnssec.py`): a key-signing key backed by a KMS key in us-east-1.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import dns.exception
import dns.immutable
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mailhost.spec import DnsProvider

from ..plan import Change, Record
from ..records import rdata, show, txt, txt_value
from .base import (ConcurrentChange, DnsError, Provider, WriteUncertain, Zone, ZoneNotFound, assign_owners,
                   marker_changes, marker_name)
from .route53_dnssec import Route53Dnssec
from .route53_names import covers, in_order, index_name, index_values, parse_index
from .route53_zones import ZoneIds, account_key

DNSSEC_REGION = "us-east-1"  # Route53 is global; its DNSSEC keys must live in KMS us-east-1
PAGE_SIZE = "300"  # the most ListResourceRecordSets returns per page
ZONES_PAGE = 100  # the most ListHostedZones returns per page
INDEX_TTL = 3600  # the names index (`route53_names`) is read through the API only, never by resolvers
MAX_BATCH_RECORDS = 1000  # ResourceRecord elements per ChangeResourceRecordSets (UPSERT counts twice)
MAX_BATCH_CHARS = 32000  # characters of Value elements per request (UPSERT counts twice)
THROTTLED = {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"}
_OCTAL = re.compile(r"\\([0-7]{3})")


def _name(route53_name: str) -> str:
    """Route53's spelling of a name (trailing dot, `\\052` octal escapes) -> ours (lowercase, no dot)."""
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), route53_name).rstrip(".").lower()


def _names(keys: Collection[tuple[str, str]]) -> set[str]:
    """The names to read for (name, type) keys: theirs and their ownership markers'."""
    return {name for name, _ in keys} | {marker_name(name, rdtype) for name, rdtype in keys}


def _pick(name: str, hosted: list[dict[str, Any]]) -> Zone:
    """The public hosted zone named `name` among those listed (ZoneNotFound; two of them are ambiguous)."""
    ids = [z["Id"].rpartition("/")[2] for z in hosted
           if _name(z["Name"]) == name and not z.get("Config", {}).get("PrivateZone")]
    if len(ids) > 1:
        raise DnsError(f"zone {name}: {len(ids)} public Route53 hosted zones have this name ({', '.join(ids)}); "
                       f"ambiguous: delete the one the registrar does not delegate to")
    if not ids:
        raise ZoneNotFound(f"zone {name}: no public Route53 hosted zone of this name in this AWS account")
    return Zone(name, ids[0])


def _error(exc: ClientError) -> tuple[str, str, int]:
    """(code, message, HTTP status) of an AWS error answer."""
    error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
    return error.get("Code", ""), error.get("Message", ""), meta.get("HTTPStatusCode", 0)


@dns.immutable.immutable
class Unmanageable(dns.rdata.GenericRdata):
    """Stands for a record set mailhost cannot write (alias, weighted, ...): equal to no real value,
    shown as what it is in plans."""

    def to_styled_text(self, style: Any = None) -> str:
        return f"<{self.data.decode()}>"

    @property
    def strings(self) -> tuple[bytes, ...]:  # TXT claims (SPF) read a value's text: this one claims nothing
        return (self.to_styled_text().encode(),)


@dataclass(frozen=True, eq=False)
class Listed:
    """A record's handle: its set and its ownership marker's set exactly as Route53 listed them."""
    rrset: dict[str, Any]
    marker: dict[str, Any] | None

    @property
    def unmanageable(self) -> str | None:
        """What makes the set one mailhost must not write, or None."""
        rrset = self.rrset
        if "AliasTarget" in rrset:
            return f"Route53 alias to {rrset['AliasTarget'].get('DNSName', '?')}"
        if "SetIdentifier" in rrset:
            return f"Route53 routing-policy set {rrset['SetIdentifier']!r}"
        if "TrafficPolicyInstanceId" in rrset:
            return "Route53 traffic-policy set"
        return None


def _owned_after(owned: set[tuple[str, str]], changes: Sequence[Change]) -> set[tuple[str, str]]:
    """The name/type sets we own once `changes` are made."""
    after = set(owned)
    for change in changes:
        (after.add if change.after is not None else after.discard)((change.name, change.rdtype))
    return after


def _rrset(name: str, rdtype: str, ttl: int, values: Sequence[dns.rdata.Rdata]) -> dict[str, Any]:
    return {"Name": name + ".", "Type": rdtype, "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in sorted(rd.to_text() for rd in values)]}


def _sendable(rrset: dict[str, Any]) -> dict[str, Any]:
    """A listed plain set as a DELETE must repeat it (same name spelling, TTL and values)."""
    return {k: rrset[k] for k in ("Name", "Type", "TTL", "ResourceRecords") if k in rrset}


def batches(groups: Sequence[list[dict[str, Any]]], max_records: int = MAX_BATCH_RECORDS,
            max_chars: int = MAX_BATCH_CHARS) -> list[list[dict[str, Any]]]:
    """Pack groups of Route53 changes into as few requests as Route53's limits allow, never splitting a
    group (one record set's DELETE, CREATE and marker must land together)."""
    def cost(group: list[dict[str, Any]]) -> tuple[int, int]:
        records = chars = 0
        for change in group:
            values = [rr["Value"] for rr in change["ResourceRecordSet"].get("ResourceRecords", [])]
            twice = 2 if change["Action"] == "UPSERT" else 1
            records += twice * len(values)
            chars += twice * sum(len(v) for v in values)
        return records, chars

    out: list[list[dict[str, Any]]] = []
    records = chars = 0
    for group in groups:
        r, c = cost(group)
        if r > max_records or c > max_chars:
            rrset = group[0]["ResourceRecordSet"]
            raise DnsError(f"{_name(rrset['Name'])} {rrset['Type']}: too large for one Route53 change request")
        if not out or records + r > max_records or chars + c > max_chars:
            out.append([])
            records = chars = 0
        out[-1].extend(group)
        records, chars = records + r, chars + c
    return out


class Route53Provider(Route53Dnssec, Provider):
    kind = "route53"
    parallel_zones = 1  # Route53 allows 5 API requests per second per account
    insync_delay = 5  # seconds between GetChange polls after a write
    insync_attempts = 60
    throttle_delay = 1.0  # first backoff after a throttled write (doubles each time)
    write_attempts = 5

    def __init__(self, config: DnsProvider, owner: str, base_dir: Path = Path(".")):
        super().__init__(config, owner, base_dir)
        try:
            session = boto3.session.Session(profile_name=config.aws_profile)
            credentials = session.get_credentials()
            access_key_id = credentials.access_key if credentials else ""
        except botocore.exceptions.ProfileNotFound:
            raise DnsError(f"dns.provider.aws_profile: AWS profile {config.aws_profile!r} not found "
                           f"(~/.aws/config, ~/.aws/credentials)") from None
        except botocore.exceptions.PartialCredentialsError as exc:
            raise DnsError(f"incomplete AWS credentials: {exc}") from None
        except BotoCoreError as exc:  # a failing credential_process or SSO cache: its message may quote secrets
            raise DnsError(f"AWS credentials could not be loaded ({type(exc).__name__})") from None
        if credentials is None:
            raise DnsError("no AWS credentials found (standard chain: env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           "~/.aws/credentials, ~/.aws/config profiles and SSO, container or instance roles); "
                           "or set dns.provider.aws_profile")
        self.route53 = self._client(session, "route53")
        # ChangeResourceRecordSets only, without botocore's retries: after a 5xx or a dropped connection the
        # batch may have been applied, so it is not replayed blindly; the sync re-reads the zone instead
        # (WriteUncertain). Throttling answers mean "refused, nothing done": `_send` retries those itself.
        self.writer = self._client(session, "route53", retries={"mode": "standard", "total_max_attempts": 1})
        self.kms = self._client(session, "kms")
        self.sts = self._client(session, "sts")
        self.domains = self._client(session, "route53domains")
        # zone id -> (our names index as last listed, the (name, type) keys we own there): `apply` keeps the index
        self._indexes: dict[str, tuple[dict[str, Any] | None, set[tuple[str, str]]]] = {}
        self.zone_ids = ZoneIds(account_key(config.endpoint, access_key_id))
        self._remembered: set[str] = set()  # zone ids taken from `zone_ids`, not yet found by name this run

    def _client(self, session: boto3.session.Session, service: str, retries: dict | None = None) -> Any:
        config = Config(retries=retries or {"mode": "standard", "max_attempts": 5},
                        connect_timeout=10, read_timeout=60)
        client = session.client(service, region_name=DNSSEC_REGION, endpoint_url=self.config.endpoint,
                                config=config)
        client.meta.events.register("before-call", self._count)  # every API call, paginator pages included
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.requests.count(write=not model.name.startswith(("List", "Get", "Describe")))

    def describe(self) -> str:
        return f"route53 ({self.config.endpoint})" if self.config.endpoint else "route53"

    def _call(self, client: Any, operation: str, absent: tuple[str, ...] = (), **params: Any) -> Any:
        """One API call; None when AWS answers with an error code in `absent` ("no such thing"), other
        errors become DnsError naming the call."""
        try:
            return getattr(client, operation)(**params)
        except ClientError as exc:
            code, message, _ = _error(exc)
            if code in absent:
                return None
            raise DnsError(f"{client.meta.service_model.service_name} {operation}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise DnsError(f"{client.meta.service_model.service_name} {operation}: {exc}") from None

    # -- zones and records ---------------------------------------------------------------------------
    def zone(self, name: str) -> Zone:
        """The zone by the ID an earlier run found (no request), else found by name."""
        remembered = self.zone_ids.get(name)
        if remembered is None:
            return self._found(name)
        self._remembered.add(remembered)
        return Zone(name, remembered)

    def _found(self, name: str) -> Zone:
        listed = self._call(self.route53, "list_hosted_zones_by_name", DNSName=name, MaxItems="100")
        zone = _pick(name, listed["HostedZones"])
        self.zone_ids.put(name, zone.id)
        return zone

    def zones(self, names: Sequence[str]) -> dict[str, Zone] | None:
        """Every hosted zone of the account, page by page (100 a request), when that takes fewer requests
        than finding each of `names` no earlier run found (one request each)."""
        unknown = [name for name in names if self.zone_ids.get(name) is None]
        if len(unknown) < 3:
            return None
        count = self._call(self.route53, "get_hosted_zone_count")["HostedZoneCount"]
        if -(-count // ZONES_PAGE) + 1 >= len(unknown):
            return None
        hosted = list(self._listed("list_hosted_zones", "HostedZones", "listing hosted zones",
                                   PaginationConfig={"PageSize": str(ZONES_PAGE)}))
        zones = {name: _pick(name, hosted) for name in names}
        for zone in zones.values():
            self.zone_ids.put(zone.name, zone.id)
            self._remembered.discard(zone.id)
        return zones

    def forget(self, zone: Zone) -> bool:
        if zone.id not in self._remembered:
            return False
        self._remembered.discard(zone.id)
        self.zone_ids.put(zone.name, None)
        return True

    def _confirm(self, zone: Zone) -> None:
        """Before a write to a zone known by a remembered ID: is it still the one public zone of its name?"""
        if zone.id not in self._remembered:
            return
        found = self._found(zone.name)  # DnsError when another zone of the name has appeared
        if found.id != zone.id:
            raise DnsError(f"zone {zone.name}: the hosted zone of this name is {found.id} now, not {zone.id} as "
                           f"read; nothing written, run again")
        self._remembered.discard(zone.id)

    def _rrsets(self, zone: Zone) -> Iterator[dict[str, Any]]:
        try:
            yield from self._listed("list_resource_record_sets", "ResourceRecordSets",
                                    f"zone {zone.name}: listing records", HostedZoneId=zone.id,
                                    PaginationConfig={"PageSize": PAGE_SIZE})
        except ZoneNotFound as exc:
            raise ZoneNotFound(f"zone {zone.name}: hosted zone {zone.id} is gone ({exc})") from None

    def _listed(self, operation: str, key: str, what: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated listing; ZoneNotFound (with Route53's message) when the zone is gone."""
        try:
            for page in self.route53.get_paginator(operation).paginate(**params):
                yield from page[key]
        except ClientError as exc:
            code, message, _ = _error(exc)
            if code == "NoSuchHostedZone":
                raise ZoneNotFound(message) from None
            raise DnsError(f"{what}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise DnsError(f"{what}: {exc}") from None

    def records(self, zone: Zone, wanted: Collection[tuple[str, str]] | None = None) -> list[Record]:
        """With `wanted`, only the ranges of the zone around those names and around the names our index
        lists (`route53_names`): a few requests whatever the zone's size. The whole zone without them,
        or when the zone has no index of ours yet."""
        rrsets = self._read(zone, wanted)
        index = index_name(zone.name)
        plain = [s for s in rrsets if (_name(s["Name"]), s["Type"]) != (index, "TXT")]
        by_key = {(_name(s["Name"]), s["Type"]): s for s in plain if "SetIdentifier" not in s}
        raw = []
        for rrset in plain:
            name, rdtype = _name(rrset["Name"]), rrset["Type"]
            ref = Listed(rrset, by_key.get((marker_name(name, rdtype), "TXT")))
            if ref.unmanageable:
                raw.append(Record(name, rdtype, rrset.get("TTL", 0), self._opaque(rdtype, ref.unmanageable), None, ref))
                continue
            for value in rrset.get("ResourceRecords", []):
                raw.append(Record(name, rdtype, rrset["TTL"], self._rdata(rdtype, value["Value"]), None, ref))
        records = assign_owners(raw)
        listed_index = next((s for s in rrsets if (_name(s["Name"]), s["Type"]) == (index, "TXT")), None)
        self._indexes[zone.id] = (listed_index, {(r.name, r.rdtype) for r in records if r.owner == self.owner})
        return records

    def _read(self, zone: Zone, wanted: Collection[tuple[str, str]] | None) -> list[dict[str, Any]]:
        if wanted is not None:
            listed: dict[tuple[str, str, str | None], dict[str, Any]] = {}
            ranges: list[tuple[str, str | None]] = []
            index = index_name(zone.name)
            if self._around(zone, _names(wanted) | {zone.name, index}, listed, ranges):
                if (zone.name, None) in ranges:  # one page held the whole zone
                    return list(listed.values())
                texts = [t for s in listed.values() if (_name(s["Name"]), s["Type"]) == (index, "TXT")
                         for t in self._texts(s)]
                owned = parse_index(zone.name, self.owner, texts)
                if owned is not None and self._around(zone, _names(owned), listed, ranges):
                    return list(listed.values())
        return list(self._rrsets(zone))

    def _around(self, zone: Zone, names: Collection[str], listed: dict[tuple[str, str, str | None], dict[str, Any]],
                ranges: list[tuple[str, str | None]]) -> bool:
        """List a page from each of `names` not yet covered by `ranges` (adding to both); False when a
        page ends among one name's sets (more than a page at one name: only a whole listing is sure)."""
        for name in in_order(names):
            if any(covers(start, end, name) for start, end in ranges):
                continue
            page = self._call(self.route53, "list_resource_record_sets", ("NoSuchHostedZone",),
                              HostedZoneId=zone.id, StartRecordName=name + ".", MaxItems=PAGE_SIZE)
            if page is None:
                raise ZoneNotFound(f"zone {zone.name}: hosted zone {zone.id} is gone")
            for rrset in page["ResourceRecordSets"]:
                listed[_name(rrset["Name"]), rrset["Type"], rrset.get("SetIdentifier")] = rrset
            end = _name(page["NextRecordName"]) if page.get("IsTruncated") else None
            if not covers(name, end, name):
                return False
            ranges.append((name, end))
        return True

    @staticmethod
    def _texts(rrset: dict[str, Any] | None) -> list[str]:
        """The texts of a listed TXT set's values (each value's strings joined; an unreadable one is empty)."""
        texts = []
        for value in (rrset or {}).get("ResourceRecords", []):
            try:
                texts.append(txt_value(rdata("TXT", value["Value"])))
            except dns.exception.DNSException:
                texts.append("")
        return texts

    @staticmethod
    def _opaque(rdtype: str, what: str) -> Unmanageable:
        return Unmanageable(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), what.encode())

    def _rdata(self, rdtype: str, value: str) -> dns.rdata.Rdata:
        try:
            return rdata(rdtype, value)
        except dns.exception.DNSException:
            return self._opaque(rdtype, f"unreadable value {value[:60]!r}")

    # -- writing -------------------------------------------------------------------------------------
    def apply(self, zone: Zone, changes: Sequence[Change]) -> None:
        """One ChangeResourceRecordSets request for the zone, so it changes all at once or not at all.
        Only changes beyond Route53's per-request limits (1,000 records, 32,000 characters) are split
        into several requests (`batches`); atomicity is then per request, and each record set travels
        with its marker; our names index (`route53_names`) follows. Waits until Route53 serves the change
        (the ACME HTTP-01 step needs the records)."""
        self._confirm(zone)
        groups = [self._route53_changes(zone, change) for change in changes]
        index = self._index_changes(zone, changes)  # last: a name leaves it once its records are gone
        try:
            for batch in batches(groups + ([index] if index else [])):
                change_id = self._send(zone, batch)
                self._wait(zone, change_id)
        except Exception:
            self._indexes.pop(zone.id, None)  # how far it got is unknown: read the zone before another apply
            raise
        if zone.id in self._indexes:  # the index as written, for a later apply planned on the same reading
            listed, owned = self._indexes[zone.id]
            created = [c["ResourceRecordSet"] for c in index if c["Action"] == "CREATE"]
            self._indexes[zone.id] = (created[0] if created else None if index else listed,
                                      _owned_after(owned, changes))

    def _route53_changes(self, zone: Zone, change: Change) -> list[dict[str, Any]]:
        """A change as Route53 changes: DELETE the whole current set, CREATE the whole new one, and the marker."""
        current = change.before + change.kept
        odd = [r for r in current if isinstance(r.rdata, Unmanageable)]
        if odd:
            raise DnsError(f"zone {zone.name}: {change.name} {change.rdtype} holds {show(odd[0].rdata)}, which "
                           f"mailhost cannot replace with plain records; nothing written. Remove it in Route53 "
                           f"or leave {change.name} {change.rdtype} to it")
        out = []
        listed = {r.ref for r in current if isinstance(r.ref, Listed)}
        if listed:  # one plain set per name and type: DELETE it exactly as listed
            out.append({"Action": "DELETE", "ResourceRecordSet": _sendable(next(iter(listed)).rrset)})
        elif current:  # records that did not come from `records()`: rebuild the set from them
            out.append({"Action": "DELETE", "ResourceRecordSet": _rrset(
                change.name, change.rdtype, current[0].ttl, [r.rdata for r in current])})
        after = change.rrset_after()
        if after:
            out.append({"Action": "CREATE", "ResourceRecordSet": _rrset(change.name, change.rdtype, change.ttl,
                                                                          list(after))})
        marker, value = marker_changes(change, self.owner)
        if value is not None:
            out.append({"Action": "UPSERT", "ResourceRecordSet": _rrset(marker, "TXT", change.ttl, [value])})
        else:
            old = next((r.ref.marker for r in change.before if isinstance(r.ref, Listed) and r.ref.marker), None)
            if old:
                out.append({"Action": "DELETE", "ResourceRecordSet": _sendable(old)})
        return out

    def upkeep(self, zone: Zone) -> bool:
        """A zone holding our records but no index of them (set up before the index was kept) gets one."""
        return bool(self._index_changes(zone, []))

    def _index_changes(self, zone: Zone, changes: Sequence[Change]) -> list[dict[str, Any]]:
        """The changes that make our names index list what we own once `changes` are made (others' values
        kept); none when it already does, or when the zone was not read first (nothing to go by)."""
        if zone.id not in self._indexes:
            return []
        listed, owned = self._indexes[zone.id]
        after = _owned_after(owned, changes)
        texts = self._texts(listed)
        if parse_index(zone.name, self.owner, texts) == (after or None):
            return []
        others = [t for t in texts if parse_index(zone.name, self.owner, [t]) is None]
        values = others + index_values(zone.name, self.owner, after)
        out = [{"Action": "DELETE", "ResourceRecordSet": _sendable(listed)}] if listed else []
        if values:
            out.append({"Action": "CREATE", "ResourceRecordSet": _rrset(index_name(zone.name), "TXT", INDEX_TTL,
                                                                          [txt(v) for v in values])})
        return out

    def _send(self, zone: Zone, batch: list[dict[str, Any]]) -> str:
        """One ChangeResourceRecordSets request; returns the change id to wait for."""
        for attempt in itertools.count(1):
            try:
                answer = self.writer.change_resource_record_sets(
                    HostedZoneId=zone.id, ChangeBatch={"Comment": f"mailhost ({self.owner})", "Changes": batch})
                return answer["ChangeInfo"]["Id"]
            except ClientError as exc:
                code, message, status = _error(exc)
                if code in THROTTLED and attempt < self.write_attempts:
                    time.sleep(self.throttle_delay * 2 ** (attempt - 1))
                    continue
                if code == "InvalidChangeBatch" and "Tried to" in message:  # a DELETE or CREATE met another state
                    raise ConcurrentChange(f"zone {zone.name} changed since it was read; nothing written "
                                           f"(Route53: {message}). Plan again") from None
                if code in THROTTLED or status >= 500:
                    raise WriteUncertain(f"zone {zone.name}: Route53 answered {status} {code}") from None
                raise DnsError(f"zone {zone.name}: Route53 refused the change, nothing written: "
                               f"{code}: {message}") from None
            except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
                raise WriteUncertain(f"zone {zone.name}: no answer from Route53 ({type(exc).__name__})") from None

    def _wait(self, zone: Zone, change_id: str) -> None:
        waiter = self.route53.get_waiter("resource_record_sets_changed")
        try:
            waiter.wait(Id=change_id, WaiterConfig={"Delay": self.insync_delay, "MaxAttempts": self.insync_attempts})
        except botocore.exceptions.WaiterError:
            raise DnsError(f"zone {zone.name}: change {change_id} was accepted, but Route53 did not report it in "
                           f"sync within {self.insync_delay * self.insync_attempts}s; run again later") from None


PROVIDER = Route53Provider
