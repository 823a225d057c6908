"""DANE key rollover of the mail certificate, without a moment where a DANE sender finds no matching TLSA.

The host name has two certificates (certbot lineages, "slots": `<host>` and `<host>-b`), each with a key of its
own; the services use the one `/etc/mailhost/tls/current` points at, and the TLSA RRset names both keys at all
times, so the standby key is published long before it is used. A renewal keeps each key (`--reuse-key`):
nothing changes in DNS.

Raising `tls.key_generation` in the spec asks for a new key. A run then switches the services to the standby
(once its TLSA record has been served by every authoritative nameserver for at least the record's TTL, so no
resolver still holds an RRset without it), makes a new key for the slot it left, and publishes that key's TLSA
in place of the old one. A run that finds the standby too freshly published says until when it waits and
changes nothing; a later run finishes (a deploy never sleeps for an hour).

The host keeps the state in three files: the generation applied, when the standby's key was published
(`<sha256 of its SubjectPublicKeyInfo> <unix time>`, written after the DNS stage published it), and the slot
still to get its new key after a switch (so a run cut off between the switch and the new key finishes it).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from mailhost.dns import authoritative
from mailhost.dns.records import rdata, tlsa_value
from mailhost.spec import Spec

TLS_DIR = "/etc/mailhost/tls"
CURRENT = f"{TLS_DIR}/current"  # -> /etc/letsencrypt/live/<slot>: what Postfix, Dovecot and nginx load
STATE = "/var/lib/mailhost"
GENERATION_FILE = f"{STATE}/tls-key-generation"
PUBLISHED_FILE = f"{STATE}/tls-standby-published"
REKEY_FILE = f"{STATE}/tls-rekey"  # the slot left by a switch, until it has its new key (a cut-off run resumes)


def slots(spec: Spec) -> tuple[str, str]:
    """The two certificate names of the host name."""
    return spec.certificate_slots


def other(spec: Spec, slot: str) -> str:
    first, second = slots(spec)
    return second if slot == first else first


def key_digest(spki_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(spki_b64)).hexdigest()


@dataclass(frozen=True)
class HostTls:
    """What the host says: the slot in use (None: not set up yet), the generation applied, and when the
    standby's key (by digest) was published."""
    current: str | None
    generation: int
    published: tuple[str, float] | None
    rekey: str | None = None

    @classmethod
    def parse(cls, lines: list[str]) -> HostTls:
        fields = dict(line.split(" ", 1) for line in lines if " " in line)
        current = fields.get("current", "").rsplit("/", 1)[-1] or None
        generation = fields.get("generation", "1").strip()
        digest, _, when = fields.get("published", "").partition(" ")
        published = (digest, float(when)) if digest and when.replace(".", "", 1).isdigit() else None
        return cls(current, int(generation) if generation.isdigit() else 1, published, fields.get("rekey") or None)


HOST_TLS_COMMAND = (f"printf 'current %s\\n' \"$(readlink {CURRENT} 2>/dev/null)\"; "
                    f"printf 'generation %s\\n' \"$(cat {GENERATION_FILE} 2>/dev/null || echo 1)\"; "
                    f"printf 'published %s\\n' \"$(cat {PUBLISHED_FILE} 2>/dev/null)\"; "
                    f"printf 'rekey %s\\n' \"$(cat {REKEY_FILE} 2>/dev/null)\"")


@dataclass(frozen=True)
class Decision:
    rotate: bool
    reason: str  # for the deploy's log: what happens, or until when it waits


def decide(spec: Spec, state: HostTls, keys: dict[str, str], now: float, served_everywhere) -> Decision:
    """Whether this run switches to the standby key. `keys`: {slot: base64 SPKI}; `served_everywhere(value)`:
    does every authoritative nameserver serve this TLSA value (None: could not tell)?"""
    if spec.tls.key_generation <= state.generation:
        return Decision(False, "")
    if state.rekey:
        return Decision(False, f"key rollover waits: {state.rekey} is still to get its new key (this run does it)")
    current = state.current or slots(spec)[0]
    standby = other(spec, current)
    if standby not in keys or current not in keys:
        return Decision(False, "key rollover waits: a certificate is not there yet")
    if state.published is None or state.published[0] != key_digest(keys[standby]):
        return Decision(False, "key rollover waits: the standby key's TLSA record has not been published yet "
                               "(this run publishes it; run again after dns.ttl)")
    ready_at = state.published[1] + spec.dns.ttl
    if now < ready_at:
        return Decision(False, f"key rollover waits until {int(ready_at - now)} s from now (the standby key's TLSA "
                               f"record must be served for dns.ttl = {spec.dns.ttl} s first); run again then")
    value = tlsa_value(base64.b64decode(keys[standby]))
    if served_everywhere(value) is not True:
        return Decision(False, "key rollover waits: not every authoritative nameserver serves the standby key's "
                               "TLSA record yet")
    return Decision(True, f"key rollover: the services switch to {standby}'s key, {current} gets a new one")


def served_by_all_nameservers(spec: Spec, value: str) -> bool | None:
    """Does every authoritative nameserver of the host name's zone answer `_25._tcp.<host>` TLSA with `value`?"""
    return authoritative.served_everywhere(spec.zone_of(spec.hostname), spec.dns.resolvers,
                                           f"_25._tcp.{spec.hostname}", "TLSA", rdata("TLSA", value))
