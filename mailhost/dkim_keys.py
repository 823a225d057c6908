"""DKIM key rotation, declared in the spec: rename a domain's selectors and the deploys that follow rotate its keys
without a moment where mail is unsigned or signed with a key receivers cannot find.

What rspamd signs with is what its live `dkim_signing.conf` names (the host's truth, read as a fact). When the
spec names a selector the host does not sign with yet while another key of the same domain and algorithm still
signs, the run makes the new key and the DNS stage publishes it; signing switches to it only on a later run,
once its record has been out for `dns.ttl` (noted on the host when published) and every authoritative
nameserver serves it. The key it replaces stops signing then (noted: "retired") and stays published for
`dkim.retention`, so mail signed just before the switch still verifies where it lands late; after that its
record is withdrawn and its private key removed. A run never sleeps: it says where each rotation stands and a
later run goes on from there, so a run cut off anywhere is finished by the next one.

A domain that signs with no key of an algorithm yet (a new domain, a first Ed25519 key) signs with the new key
at once: the deploy publishes the record before rspamd restarts with it.

The host keeps the notes beside the keys' state: `/var/lib/mailhost/dkim/<domain>/<selector>.<algorithm>.published`
and `.retired`, each holding a unix time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhost import hostinfo
from mailhost.spec import Spec

STATE_DIR = "/var/lib/mailhost/dkim"
SIGNING_CONF = "/etc/rspamd/local.d/dkim_signing.conf"

KeyId = tuple[str, str, str]  # (domain, selector, algorithm)


def marker(key: KeyId, kind: str) -> str:
    """The note of when `key` was published or retired."""
    domain, selector, algorithm = key
    return f"{STATE_DIR}/{domain}/{selector}.{algorithm}.{kind}"


# One command for the whole state: the keys on the host, those the live rspamd config signs with, the notes.
HOST_DKIM_COMMAND = (
    f"for k in {hostinfo.DKIM_KEY_DIR}/*/*.rsa {hostinfo.DKIM_KEY_DIR}/*/*.ed25519; do [ -f \"$k\" ] || continue; "
    "d=${k%/*}; d=${d##*/}; f=${k##*/}; echo \"key $d ${f%.*} ${f##*.}\"; done; "
    f"sed -n 's|.*path = \"{hostinfo.DKIM_KEY_DIR}/\\([^/\"]*\\)/\\([^/\"]*\\)\\.\\([a-z0-9]*\\)\".*|signing \\1 \\2 \\3|p' "
    f"{SIGNING_CONF} 2>/dev/null; "
    f"for n in {STATE_DIR}/*/*.published {STATE_DIR}/*/*.retired; do [ -f \"$n\" ] || continue; "
    "d=${n%/*}; d=${d##*/}; f=${n##*/}; k=${f%.*}; read -r at < \"$n\"; "
    "echo \"${f##*.} $d ${k%.*} ${k##*.} $at\"; done; true")


@dataclass(frozen=True)
class HostKeys:
    """What the host says: its keys, those rspamd signs with now, and when each was published and retired."""
    keys: frozenset[KeyId] = frozenset()
    signing: frozenset[KeyId] = frozenset()
    published: dict[KeyId, float] = field(default_factory=dict)
    retired: dict[KeyId, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, lines: list[str]) -> HostKeys:
        keys, signing, published, retired = set(), set(), {}, {}
        for line in lines:
            kind, *rest = line.split()
            if kind in ("key", "signing") and len(rest) == 3:
                (keys if kind == "key" else signing).add(tuple(rest))
            elif kind in ("published", "retired") and len(rest) == 4 and rest[3].replace(".", "", 1).isdigit():
                (published if kind == "published" else retired)[tuple(rest[:3])] = float(rest[3])
        return cls(frozenset(keys), frozenset(signing), published, retired)


@dataclass(frozen=True)
class KeyPlan:
    """What this run does with the DKIM keys."""
    sign: list[KeyId]  # what rspamd signs with from this run on
    make: list[KeyId]  # new keys
    retire: list[KeyId]  # stop signing now (noted, kept published for the retention)
    remove: list[KeyId]  # retention over: record withdrawn, private key removed
    notes: list[str]  # where each rotation stands, for the deploy's log

    @property
    def changes_dns(self) -> bool:
        return bool(self.make or self.remove)


def named(key: KeyId) -> str:
    domain, selector, algorithm = key
    return f"{domain} {'Ed25519' if algorithm == 'ed25519' else 'RSA'} '{selector}'"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def decide(spec: Spec, host: HostKeys, now: float, served_everywhere: Callable[[KeyId], bool | None]) -> KeyPlan:
    """The run's plan for every domain and algorithm. `served_everywhere(key)`: does every authoritative
    nameserver serve the key's record as the host has it (None: could not tell)?"""
    sign, make, retire, remove, notes = [], [], [], [], []
    named_by_spec = {(d.name, s, a) for d in spec.domains for s, a in spec.dkim_keys(d)}
    for domain in spec.domains:
        for algorithm in hostinfo.DKIM_ALGORITHMS:
            wanted = [(domain.name, s, a) for s, a in spec.dkim_keys(domain) if a == algorithm]
            make += [k for k in wanted if k not in host.keys]
            old = sorted(k for k in host.signing & host.keys
                         if k[0] == domain.name and k[2] == algorithm and k not in wanted)
            if not old:
                sign += wanted
                continue
            waiting = [k for k in wanted if k not in host.signing and not _ready(spec, host, k, now, served_everywhere)]
            if waiting:
                sign += old + [k for k in wanted if k in host.signing]
                notes += [_waits(spec, host, k, now) for k in waiting]
            else:
                sign += wanted
                retire += old
                notes.append(f"DKIM rotation: {', '.join(named(k) for k in wanted) or domain.name} signs from this "
                             f"run on, in place of {', '.join(named(k) for k in old)} (published until "
                             f"{_when(now + spec.dkim.retention)})")
    signing = set(sign)
    for key in sorted(host.keys - signing - named_by_spec):
        retired = host.retired.get(key)
        if key in retire or key in signing:
            continue
        if retired is None:
            retire.append(key)  # a key that left the spec before it ever signed: kept published all the same
        elif now >= retired + spec.dkim.retention:
            remove.append(key)
            notes.append(f"DKIM rotation: {named(key)} is withdrawn from DNS and removed from the host "
                         f"(retired {_when(retired)}, dkim.retention over)")
        else:
            notes.append(f"DKIM rotation: {named(key)} no longer signs; it stays published until "
                         f"{_when(retired + spec.dkim.retention)} (dkim.retention)")
    return KeyPlan(sorted(signing), sorted(make), sorted(retire), sorted(remove), notes)


def _ready(spec: Spec, host: HostKeys, key: KeyId, now: float, served_everywhere) -> bool:
    published = host.published.get(key)
    return (key in host.keys and published is not None and now >= published + spec.dns.ttl
            and served_everywhere(key) is True)


def _waits(spec: Spec, host: HostKeys, key: KeyId, now: float) -> str:
    published = host.published.get(key)
    if key not in host.keys or published is None:
        return (f"DKIM rotation: {named(key)} is {'made and ' if key not in host.keys else ''}published by this "
                f"run; the old key signs until a run after dns.ttl ({spec.dns.ttl} s) switches")
    if now < published + spec.dns.ttl:
        return (f"DKIM rotation: {named(key)} was published {_when(published)}; the old key signs until a run "
                f"from {_when(published + spec.dns.ttl)} switches (dns.ttl)")
    return f"DKIM rotation: {named(key)} waits until every authoritative nameserver serves its record"
