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

DNSSEC: Route53 signs with a key-signing key backed by a KMS key in us-east-1. `signing(enable=True)`
makes both once (the KMS key is found again by its alias, the KSK by its name), turns signing on, and
hands the DS to Route 53 Domains when the domain is registered there in the same account.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
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
from ..records import rdata, show
from .base import (ConcurrentChange, DnsError, Provider, Signing, WriteUncertain, Zone, ZoneNotFound, assign_owners,
                   marker_changes, marker_name)

DNSSEC_REGION = "us-east-1"  # Route53 is global; its DNSSEC keys must live in KMS us-east-1
PAGE_SIZE = "300"  # the most ListResourceRecordSets returns per page
MAX_BATCH_RECORDS = 1000  # ResourceRecord elements per ChangeResourceRecordSets (UPSERT counts twice)
MAX_BATCH_CHARS = 32000  # characters of Value elements per request (UPSERT counts twice)
THROTTLED = {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"}
KSK_FLAGS, ECDSAP256SHA256 = 257, 13
_OCTAL = re.compile(r"\\([0-7]{3})")


def _name(route53_name: str) -> str:
    """Route53's spelling of a name (trailing dot, `\\052` octal escapes) -> ours (lowercase, no dot)."""
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), route53_name).rstrip(".").lower()


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


class Route53Provider(Provider):
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
        listed = self._call(self.route53, "list_hosted_zones_by_name", DNSName=name, MaxItems="100")
        public = [z for z in listed["HostedZones"]
                  if _name(z["Name"]) == name and not z.get("Config", {}).get("PrivateZone")]
        ids = [z["Id"].rpartition("/")[2] for z in public]
        if len(ids) > 1:
            raise DnsError(f"zone {name}: {len(ids)} public Route53 hosted zones have this name ({', '.join(ids)}); "
                           f"ambiguous: delete the one the registrar does not delegate to")
        if not ids:
            raise ZoneNotFound(f"zone {name}: no public Route53 hosted zone of this name in this AWS account")
        return Zone(name, ids[0])

    def _rrsets(self, zone: Zone) -> Iterator[dict[str, Any]]:
        pages = self.route53.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone.id, PaginationConfig={"PageSize": PAGE_SIZE})
        try:
            for page in pages:
                yield from page["ResourceRecordSets"]
        except ClientError as exc:
            code, message, _ = _error(exc)
            if code == "NoSuchHostedZone":
                raise ZoneNotFound(f"zone {zone.name}: hosted zone {zone.id} is gone ({message})") from None
            raise DnsError(f"zone {zone.name}: listing records: {code}: {message}") from None
        except BotoCoreError as exc:
            raise DnsError(f"zone {zone.name}: listing records: {exc}") from None

    def records(self, zone: Zone) -> list[Record]:
        rrsets = list(self._rrsets(zone))
        by_key = {(_name(s["Name"]), s["Type"]): s for s in rrsets if "SetIdentifier" not in s}
        raw = []
        for rrset in rrsets:
            name, rdtype = _name(rrset["Name"]), rrset["Type"]
            ref = Listed(rrset, by_key.get((marker_name(name, rdtype), "TXT")))
            if ref.unmanageable:
                raw.append(Record(name, rdtype, rrset.get("TTL", 0), self._opaque(rdtype, ref.unmanageable), None, ref))
                continue
            for value in rrset.get("ResourceRecords", []):
                raw.append(Record(name, rdtype, rrset["TTL"], self._rdata(rdtype, value["Value"]), None, ref))
        return assign_owners(raw)

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
        with its marker. Waits until Route53 serves the change (the ACME HTTP-01 step needs the records)."""
        groups = [self._route53_changes(zone, change) for change in changes]
        for batch in batches(groups):
            change_id = self._send(zone, batch)
            self._wait(zone, change_id)

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

    # -- DNSSEC --------------------------------------------------------------------------------------
    @staticmethod
    def ksk_name(zone: str) -> str:
        """Our key-signing key's name (letters, digits, underscores; unique within the hosted zone)."""
        return ("mailhost_" + re.sub(r"[^A-Za-z0-9]", "_", zone))[:128]

    @staticmethod
    def kms_alias(zone: Zone) -> str:
        """The alias that finds our KMS key for a zone again (hosted zone ids are unique per account)."""
        return f"alias/mailhost-dnssec/{zone.id}"

    def signing(self, zone: Zone, enable: bool) -> Signing:
        state = self._call(self.route53, "get_dnssec", HostedZoneId=zone.id)
        if enable and self._turn_on(zone, state):
            state = self._call(self.route53, "get_dnssec", HostedZoneId=zone.id)
        status = state["Status"]
        serve = status["ServeSignature"]
        active = [k for k in state.get("KeySigningKeys", []) if k.get("Status") == "ACTIVE"]
        notes = [status["StatusMessage"]] if status.get("StatusMessage") else []
        if enable and serve == "SIGNING" and active:
            notes.append(self._registrar(zone, active))
        return Signing(zone.name, serve == "SIGNING", serve.lower(), tuple(k["DSRecord"] for k in active),
                       "; ".join(notes))

    def _turn_on(self, zone: Zone, state: dict[str, Any]) -> bool:
        """Make sure an active KSK exists and the zone is signed; True when something was changed."""
        keys = state.get("KeySigningKeys", [])
        changed = False
        if not any(k.get("Status") == "ACTIVE" for k in keys):
            name = self.ksk_name(zone.name)
            ours = next((k for k in keys if k["Name"] == name), None)
            if ours and ours["Status"] != "INACTIVE":
                raise DnsError(f"zone {zone.name}: key-signing key {name} is {ours['Status']}: "
                               f"{ours.get('StatusMessage', '')}; fix it in Route53 (often the KMS key's policy)")
            if ours:
                answer = self._call(self.route53, "activate_key_signing_key", HostedZoneId=zone.id, Name=name)
            else:
                answer = self._call(self.route53, "create_key_signing_key", HostedZoneId=zone.id,
                                    KeyManagementServiceArn=self._kms_key(zone), Name=name, Status="ACTIVE",
                                    CallerReference=f"mailhost-{uuid.uuid4()}")
            self._wait(zone, answer["ChangeInfo"]["Id"])
            changed = True
        if state["Status"]["ServeSignature"] != "SIGNING":
            answer = self._call(self.route53, "enable_hosted_zone_dnssec", HostedZoneId=zone.id)
            self._wait(zone, answer["ChangeInfo"]["Id"])
            changed = True
        return changed

    def _kms_key(self, zone: Zone) -> str:
        """ARN of the zone's KMS signing key in us-east-1: the one our alias names, else a new one."""
        alias = self.kms_alias(zone)
        found = self._call(self.kms, "describe_key", absent=("NotFoundException",), KeyId=alias)
        if found:
            key = found["KeyMetadata"]
            if key["KeyState"] != "Enabled":
                raise DnsError(f"zone {zone.name}: KMS key {alias} is {key['KeyState']}; enable it, or delete the "
                               f"alias to have a new key made")
            return key["Arn"]
        identity = self._call(self.sts, "get_caller_identity")
        policy = self.key_policy(identity["Account"], identity["Arn"].split(":")[1], zone.id)
        key = self._call(self.kms, "create_key", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
                         Policy=json.dumps(policy), Description=f"mailhost: DNSSEC key-signing key of {zone.name}")
        self._call(self.kms, "create_alias", AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
        return key["KeyMetadata"]["Arn"]

    @staticmethod
    def key_policy(account: str, partition: str, zone_id: str) -> dict[str, Any]:
        """The key policy Route53 documents for DNSSEC keys, limited to this account and hosted zone."""
        route53 = {"Service": "dnssec-route53.amazonaws.com"}
        return {"Version": "2012-10-17", "Id": "mailhost-dnssec", "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow Route 53 DNSSEC Service", "Effect": "Allow", "Principal": route53,
             "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"], "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": account},
                           "ArnLike": {"aws:SourceArn": f"arn:{partition}:route53:::hostedzone/{zone_id}"}}},
            {"Sid": "Allow Route 53 DNSSEC to CreateGrant", "Effect": "Allow", "Principal": route53,
             "Action": "kms:CreateGrant", "Resource": "*",
             "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
        ]}

    def _registrar(self, zone: Zone, keys: list[dict[str, Any]]) -> str:
        """Hand the DS to Route 53 Domains when it is the zone's registrar in this account; say what happened."""
        try:  # InvalidInput is Route 53 Domains' "domain not found in account"
            detail = self._call(self.domains, "get_domain_detail", absent=("InvalidInput", "UnsupportedTLD"),
                                DomainName=zone.name)
        except DnsError as exc:  # e.g. no permission for Route 53 Domains: signing is done all the same
            return f"could not ask Route 53 Domains ({exc}): publish the DS at the registrar"
        if detail is None:
            return "not registered with Route 53 Domains in this account: publish the DS at the registrar"
        have = {"".join(k.get("PublicKey", "").split()) for k in detail.get("DnssecKeys", [])}
        missing = [k for k in keys if "".join(k["PublicKey"].split()) not in have]
        if not missing:
            return "the DS is at the registrar (Route 53 Domains)"
        operations = [self._call(self.domains, "associate_delegation_signer_to_domain", DomainName=zone.name,
                                 SigningAttributes={"Algorithm": k.get("SigningAlgorithmType", ECDSAP256SHA256),
                                                    "Flags": k.get("Flag", KSK_FLAGS),
                                                    "PublicKey": k["PublicKey"]})["OperationId"]
                      for k in missing]
        return f"DS sent to the registrar (Route 53 Domains operation {', '.join(operations)})"


PROVIDER = Route53Provider
