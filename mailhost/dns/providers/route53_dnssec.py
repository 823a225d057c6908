"""Route53 DNSSEC: Route53 signs with a key-signing key backed by a KMS key in us-east-1.

`signing(enable=True)` makes both once (the KMS key is found again by its alias, the KSK by its name),
turns signing on, and hands the DS to Route 53 Domains when the domain is registered there in the same
account. A mixin of `Route53Provider`, whose clients (`route53`, `kms`, `sts`, `domains`), `_call` and
`_wait` it uses: one provider, its signing apart from its records.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .base import DnsError, Signing, Zone

KSK_FLAGS, ECDSAP256SHA256 = 257, 13


class Route53Dnssec:
    """DNSSEC half of `Route53Provider`."""

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
            self._confirm(zone)
            if ours:
                answer = self._call(self.route53, "activate_key_signing_key", HostedZoneId=zone.id, Name=name)
            else:
                answer = self._call(self.route53, "create_key_signing_key", HostedZoneId=zone.id,
                                    KeyManagementServiceArn=self._kms_key(zone), Name=name, Status="ACTIVE",
                                    CallerReference=f"mailhost-{uuid.uuid4()}")
            self._wait(zone, answer["ChangeInfo"]["Id"])
            changed = True
        if state["Status"]["ServeSignature"] != "SIGNING":
            self._confirm(zone)
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

