"""A mail deployment in the lab: empty signed zones, a spec that publishes into them, and a PTR.

The deploy's DNS stage fills the zones (RFC 2136 to the lab's BIND with its TSIG key). The PTR is
set here because reverse DNS belongs to whoever owns the address (the VPS provider's panel).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import Lab
from .dns import BOGUS_NAME
from .hosts import TestHost


@dataclass
class MailEnv:
    host: TestHost
    spec_path: Path
    hostname: str
    domains: list[str]
    passwords: dict[str, str] = field(repr=False)  # address -> plaintext, for the tests' clients

    @property
    def mailboxes(self) -> list[str]:
        return sorted(self.passwords)


def make_mail_env(lab: Lab, host: TestHost, directory: Path, *, domains: int = 2, mailboxes_per_domain: int = 2,
                  extra: dict | None = None, shared_hash: str | None = None) -> MailEnv:
    """Create lab zones for `domains` fresh domains, point them at `host`, and write a spec for it.

    Passwords go in files (hashed by the deploy); with `shared_hash` every mailbox gets that one hash
    instead (for benchmarks with thousands of mailboxes; the plaintexts are then unknown). `extra` adds
    spec sections; one the lab already writes (features, tls, ...) is merged key by key.
    """
    tag = uuid.uuid4().hex[:6]
    names = [f"d{i}-{tag}.test" for i in range(domains)]
    hostname = f"mail.{names[0]}"
    for zone in names:
        lab.dns.add_zone(zone)
    for address in (host.address, host.address6):
        lab.dns.set_ptr(address, hostname)
    directory.mkdir(parents=True, exist_ok=True)
    # The host's resolver and verify validate from the lab's `test.` key, not the root's, and recurse from the
    # lab's root server.
    anchor = directory / "trust-anchor.txt"
    anchor.write_text("".join(f"{lab.cfg.parent_zone} IN DNSKEY {key.to_text()}\n" for key in lab.dns.trust_anchor))
    (directory / "root-hints.txt").write_text(lab.dns.root_hints)
    passwords, boxes = {}, []
    for zone in names:
        for n in range(mailboxes_per_domain):
            address = f"user{n}@{zone}"
            passwords[address] = f"pw-{uuid.uuid4().hex}"
            boxes.append({"address": address, "password_hash": shared_hash} if shared_hash else
                         {"address": address, "password_file": f"secrets/{address}"})
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for address, password in passwords.items():
        (secrets / address).write_text(password + "\n")
        (secrets / address).chmod(0o600)
    spec = {
        "hostname": hostname,
        "domains": [{"name": n} for n in names],
        "mailboxes": boxes,
        "aliases": [{"source": f"postmaster@{names[0]}", "destinations": [boxes[0]["address"]]}],
        "tls": {"acme_directory": lab.acme.directory_url, "ca_bundle": str(lab.ca_bundle),
                "contact": f"postmaster@{names[0]}", "caa_issuer": "pebble.test"},
        "features": {"dnsbl": [f"dnsbl.{lab.cfg.parent_zone.rstrip('.')}"]},
        "dns": {"provider": {"kind": "rfc2136", "server": str(lab.cfg.nameserver),
                             "tsig_key_file": str(lab.dns.tsig_file)},
                "resolvers": [str(lab.cfg.gateway)]},
        "resolver": {"trust_anchor": str(anchor), "root_hints": str(directory / "root-hints.txt")},
        "verify": {"bogus_name": BOGUS_NAME,
                   "relay_probe": f"relay-probe@remote.{lab.cfg.parent_zone.rstrip('.')}"},
    }
    if len(names) > 1:
        spec["aliases"].append({"source": f"@{names[-1]}", "destinations": [boxes[-1]["address"]]})
    for key, value in (extra or {}).items():  # a section given as a mapping adds to the lab's own
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    spec_path = directory / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return MailEnv(host, spec_path, hostname, names, passwords)
