#!/usr/bin/env python3
"""DNS sync cost per provider: API requests (reads/writes) per zone for a fresh and a no-op sync, a fresh
host's deploy (two writes: how often it reads the zone), the no-op in a zone crowded with others' records,
and the time to sync 100 zones.

    .venv/bin/python benchmarks/dns_sync.py [--zones 100] [--crowd 1000] [--no-lab]

Cloudflare runs against the lab's API fake and Route53 against moto's server (both on 127.0.0.1); RFC 2136
against the lab's BIND (the lab is brought up, and down again if this script started it). Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailhost.dns.providers import make_provider  # noqa: E402
from mailhost.dns.records import HostFacts  # noqa: E402
from mailhost.dns.sync import DnsSync  # noqa: E402
from mailhost.spec import parse_spec  # noqa: E402

HASH = "{SHA512-CRYPT}$6$x$y"


@dataclass
class Backend:
    """One provider on this machine: how to make a zone (with `crowd` foreign records) and the spec's provider."""
    name: str
    add_zone: Callable[[str, int], None]
    provider: dict


def dkim_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def spec_for(zones: list[str], provider: dict):
    return parse_spec({"hostname": f"mail.{zones[0]}", "domains": [{"name": z} for z in zones],
                       "mailboxes": [{"address": f"postmaster@{zones[0]}", "password_hash": HASH}],
                       "dns": {"provider": provider}})


ADDRESSES = ("198.18.0.77", "fd6d:6c68:6c61::4d")


def facts_for(zones: list[str], key: str) -> HostFacts:
    return HostFacts(ADDRESSES, {(z, s, a): key for z in zones for s, a in (("mail", "rsa"), ("ed25519", "ed25519"))},
                     {f"mail.{zones[0]}": key, f"mail.{zones[0]}-b": key})


def sync_for(zones: list[str], backend: Backend) -> DnsSync:
    spec = spec_for(zones, backend.provider)
    return DnsSync(spec, make_provider(spec.dns.provider, spec.dns_owner))


def sync_once(zones: list[str], backend: Backend, key: str) -> tuple[float, int, int]:
    sync = sync_for(zones, backend)
    start = time.monotonic()
    sync.apply(sync.plan(facts_for(zones, key)))
    return time.monotonic() - start, sync.provider.requests.reads, sync.provider.requests.writes


def deploy_once(zones: list[str], backend: Backend, key: str) -> tuple[int, int, int]:
    """A fresh host's deploy, as `stages/dns` runs it: plan while preparing (no keys yet), publish what is
    known, then the keys the host made. Returns (reads of the zone's records, read requests, write requests)."""
    sync = sync_for(zones, backend)
    listings = []
    records = sync.provider.records
    sync.provider.records = lambda *args: listings.append(args) or records(*args)
    no_keys = HostFacts(ADDRESSES, {}, {})
    sync.plan(no_keys)
    sync.apply(sync.plan(no_keys))
    sync.apply(sync.plan(facts_for(zones, key)))
    return len(listings), sync.provider.requests.reads, sync.provider.requests.writes


@contextmanager
def cloudflare() -> Iterator[Backend]:
    from lab.cloudflare_api import FakeCloudflare
    with FakeCloudflare() as api:
        os.environ["MAILHOST_BENCH_CF_TOKEN"] = api.token

        def add_zone(name: str, crowd: int) -> None:
            api.add_zone(name)
            for i in range(crowd):
                api.add_record(name, "A", f"h{i}.{name}", f"192.0.2.{i % 250 + 1}", ttl=300)
        yield Backend("cloudflare (API fake)", add_zone,
                      {"kind": "cloudflare", "endpoint": api.url, "api_token_env": "MAILHOST_BENCH_CF_TOKEN"})


@contextmanager
def route53() -> Iterator[Backend]:
    from lab.route53_api import FAKE_CREDENTIALS, MotoRoute53
    os.environ.update({"AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
                       "AWS_DEFAULT_REGION": "us-east-1"})
    with MotoRoute53() as aws, tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # zone IDs remembered by this run's syncs only
        client = aws.client()

        def add_zone(name: str, crowd: int) -> None:
            zone_id = aws.create_zone(name)
            for start in range(0, crowd, 500):
                changes = [{"Action": "CREATE", "ResourceRecordSet": {
                    "Name": f"h{i}.{name}.", "Type": "A", "TTL": 300,
                    "ResourceRecords": [{"Value": f"192.0.2.{i % 250 + 1}"}]}}
                    for i in range(start, min(crowd, start + 500))]
                client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
        yield Backend("route53 (moto)", add_zone, {"kind": "route53", "endpoint": aws.url})


@contextmanager
def rfc2136() -> Iterator[Backend]:
    from lab import Lab
    lab = Lab()
    started = lab.up()
    made: list[str] = []
    try:
        def add_zone(name: str, crowd: int) -> None:
            lab.dns.add_zone(name, "".join(f"h{i} 300 A 192.0.2.{i % 250 + 1}\n" for i in range(crowd)))
            made.append(name)
        yield Backend("rfc2136 (lab BIND, signing)", add_zone,
                      {"kind": "rfc2136", "server": lab.cfg.nameserver, "tsig_key_file": str(lab.dns.tsig_file)})
    finally:
        for name in made:
            lab.dns.remove_zone(name)
        if started:
            lab.down()


def measure(backend: Backend, zones: int, crowd: int, tag: str) -> None:
    key = dkim_key()
    one = f"one-{tag}.test"
    backend.add_zone(one, 0)
    fresh = sync_once([one], backend, key)
    noop = sync_once([one], backend, key)
    deployed = f"deploy-{tag}.test"
    backend.add_zone(deployed, 0)
    deploy = deploy_once([deployed], backend, key)
    crowded = f"crowd-{tag}.test"
    backend.add_zone(crowded, crowd)
    sync_once([crowded], backend, key)
    crowded_noop = sync_once([crowded], backend, key)
    many = [f"m{i}-{tag}.test" for i in range(zones)]
    t = time.monotonic()
    for name in many:
        backend.add_zone(name, 0)
    setup = time.monotonic() - t
    fresh_many = sync_once(many, backend, key)
    noop_many = sync_once(many, backend, key)
    print(f"{backend.name}:")
    print(f"  one zone, fresh sync:        {fresh[1]} reads, {fresh[2]} writes ({fresh[0] * 1000:.0f} ms)")
    print(f"  one zone, no-op sync:        {noop[1]} reads, {noop[2]} writes ({noop[0] * 1000:.0f} ms)")
    print(f"  one zone, a fresh host's deploy (plan, publish, publish keys): the zone read {deploy[0]} time(s); "
          f"{deploy[1]} reads, {deploy[2]} writes")
    print(f"  zone with {crowd} others' records, no-op: {crowded_noop[1]} reads, {crowded_noop[2]} writes "
          f"({crowded_noop[0] * 1000:.0f} ms)")
    print(f"  {zones} zones, fresh sync:      {fresh_many[0]:.1f} s ({fresh_many[1]} reads, {fresh_many[2]} writes; "
          f"zone setup {setup:.1f} s not counted)")
    print(f"  {zones} zones, no-op sync:      {noop_many[0]:.1f} s ({noop_many[1]} reads, {noop_many[2]} writes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=100)
    parser.add_argument("--crowd", type=int, default=1000)
    parser.add_argument("--no-lab", action="store_true", help="skip RFC 2136 (needs root and the lab)")
    args = parser.parse_args()
    backends = [cloudflare, route53] + ([] if args.no_lab else [rfc2136])
    tag = base64.b32encode(os.urandom(5)).decode().lower()
    for make in backends:
        with ExitStack() as stack:
            backend = stack.enter_context(make())
            measure(backend, args.zones, args.crowd, tag)


if __name__ == "__main__":
    main()
