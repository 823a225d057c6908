"""The Cloudflare provider through the real SDK against the stateful fake API (lab.cloudflare_api):
what a sync publishes, what it leaves alone, how it pages, and how it survives rate limits, server errors
and lost answers without duplicating records."""

from __future__ import annotations

import base64
import os
import hashlib
import time
import traceback
from pathlib import Path

import cloudflare
import dns.dnssec
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailhost.dns.providers import DnsError, ZoneNotFound, make_provider
from mailhost.dns.providers.base import Requests
from mailhost.dns.providers.cloudflare import _codes
from mailhost.dns.plan import Change
from mailhost.dns.records import HostFacts, RecordSet, rdata, txt
from mailhost.dns.signing import normal_ds
from mailhost.dns.sync import DnsSync
from lab.cloudflare_api import FakeCloudflare, txt_bytes
from mailhost.spec import parse_spec

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86
TOKEN_ENV = "MH_TEST_CF_TOKEN"
OWNER = "mail-example-org"  # the default owner tag of mail.example.org
COMMENT = f"mailhost owner={OWNER}"
BATCH = "POST /zones/:id/dns_records/batch"
LIST = "GET /zones/:id/dns_records"
ADDRESSES = ("192.0.2.25", "2001:db8::25")


def spki() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {"mail": spki(), "old": spki(), "tls": spki(), "ed25519": base64.b64encode(os.urandom(32)).decode()}


@pytest.fixture
def fake():
    with FakeCloudflare() as api:
        api.add_zone("example.org")
        yield api


@pytest.fixture
def spec(fake, monkeypatch):
    """Factory: the spec of mail.example.org publishing to the fake, with `dns:` extras."""
    monkeypatch.setenv(TOKEN_ENV, fake.token)

    def make(selectors=("mail",), domains=("example.org",), provider=None, base_dir=Path("."), **dns):
        provider = provider or {"kind": "cloudflare", "endpoint": fake.url, "api_token_env": TOKEN_ENV}
        return parse_spec({
            "hostname": "mail.example.org",
            "domains": [{"name": d, "dkim_selectors": list(selectors)} for d in domains],
            "mailboxes": [{"address": "alice@example.org", "password_hash": HASH}],
            "dns": {"provider": provider, **dns},
        }, base_dir=base_dir)
    return make


def dkim_keys(keys: dict[str, str], domains=("example.org",), selectors=("mail",)) -> dict:
    """Each domain's RSA keys and its Ed25519 key (the default selector), as the host's fact has them."""
    return {**{(d, s, "rsa"): keys[s] for d in domains for s in selectors},
            **{(d, "ed25519", "ed25519"): keys["ed25519"] for d in domains}}


def facts(keys: dict[str, str], selectors=("mail",)) -> HostFacts:
    return HostFacts(addresses=ADDRESSES, dkim_keys=dkim_keys(keys, selectors=selectors),
                     tls_keys={"mail.example.org": keys["tls"], "mail.example.org-b": keys["tls"]})


def tlsa(key: str) -> str:
    """The TLSA 3 1 1 value of a base64 SubjectPublicKeyInfo, as Cloudflare shows it (lower-case hex)."""
    return "3 1 1 " + hashlib.sha256(base64.b64decode(key)).hexdigest()


def run(spec, host_facts: HostFacts):
    """Plan and apply with a fresh provider; returns (provider, final zone states)."""
    provider = make_provider(spec.dns.provider, spec.dns_owner)
    sync = DnsSync(spec, provider)
    return provider, sync.apply(sync.plan(host_facts))


def published(fake: FakeCloudflare) -> list[tuple[str, str, str]]:
    """The zone as (name, type, value) in the fake's own reading (TXT strings joined, MX and SRV with priority)."""
    def value(r: dict) -> str:
        if r["type"] == "TXT":
            return txt_bytes(r["content"]).decode()
        return f"{r['priority']} {r['content']}" if r["type"] in ("MX", "SRV") else r["content"]
    return sorted((r["name"], r["type"], value(r)) for r in fake.records("example.org"))


# The MTA-STS policy mail.example.org serves by default, and the id of the record announcing it.
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
POLICY_ID = hashlib.sha256(POLICY.encode()).hexdigest()[:20]


def web_records(domain: str) -> list[tuple[str, str, str]]:
    """A domain's MTA-STS and client autoconfig records (on by default), as Cloudflare shows them (an SRV's
    content is "weight port target", its priority a field of its own: here in front, as `published` reads)."""
    return [
        (f"mta-sts.{domain}", "CNAME", "mail.example.org"),
        (f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={POLICY_ID}"),
        (f"autoconfig.{domain}", "CNAME", "mail.example.org"),
        (f"_submissions._tcp.{domain}", "SRV", "0 1 465 mail.example.org"),
        (f"_submission._tcp.{domain}", "SRV", "10 1 587 mail.example.org"),
        (f"_imaps._tcp.{domain}", "SRV", "0 1 993 mail.example.org"),
        (f"_imap._tcp.{domain}", "SRV", "10 1 143 mail.example.org"),
        (f"_pop3s._tcp.{domain}", "SRV", "0 0 0 ."),  # POP3 is off: "not offered" (RFC 6186 3.4)
        (f"_pop3._tcp.{domain}", "SRV", "0 0 0 ."),
    ]


# What each further domain gets in its own zone: MX, SPF, DMARC, TLS-RPT, two DKIM keys and the 9 web records.
PER_DOMAIN = 6 + len(web_records("example.net"))


def expected(keys: dict[str, str], selectors=("mail",)) -> list[tuple[str, str, str]]:
    return sorted(web_records("example.org") + [
        ("mail.example.org", "A", ADDRESSES[0]),
        ("mail.example.org", "AAAA", ADDRESSES[1]),
        ("example.org", "MX", "10 mail.example.org"),
        ("example.org", "TXT", "v=spf1 mx -all"),
        ("_dmarc.example.org", "TXT", "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"),
        ("_smtp._tls.example.org", "TXT", "v=TLSRPTv1; rua=mailto:postmaster@example.org"),
        ("_25._tcp.mail.example.org", "TLSA", tlsa(keys["tls"])),
        ("mail.example.org", "CAA", '0 issue "letsencrypt.org"'),
        ("ed25519._domainkey.example.org", "TXT", f"v=DKIM1; k=ed25519; p={keys['ed25519']}"),
    ] + [(f"{s}._domainkey.example.org", "TXT", f"v=DKIM1; k=rsa; p={keys[s]}") for s in selectors])


# -- publishing -------------------------------------------------------------------------------------
def test_fresh_sync_publishes_tagged_records_in_one_batch_and_a_rerun_is_free(fake, spec, keys):
    provider, _ = run(spec(), facts(keys))
    assert published(fake) == expected(keys)
    assert provider.requests == Requests(reads=2, writes=1)  # zone lookup, one page, one batch
    assert fake.requests[BATCH] == 1
    for record in fake.records("example.org"):
        assert record["comment"] == COMMENT and record["ttl"] == 3600 and record["proxied"] is False
    dkim = fake.records("example.org", "TXT", "mail._domainkey.example.org")[0]["content"]
    strings = dkim.split('" "')
    assert len(strings) == 2 and len(strings[0].strip('"')) == 255  # quoted, split at 255 bytes

    again = make_provider(spec().dns.provider, OWNER)
    zone = again.zone("example.org")
    read = {(r.name, r.rdtype): r for r in again.records(zone)}
    assert read["mail._domainkey.example.org", "TXT"].rdata == txt(f"v=DKIM1; k=rsa; p={keys['mail']}")
    assert all(r.owner == OWNER for r in read.values())

    provider, states = run(spec(), facts(keys))
    assert [s.plan.changes for s in states] == [[]]
    assert provider.requests == Requests(reads=2, writes=0)


def test_a_deploys_two_writes_are_planned_on_its_one_reading(fake, spec, keys):
    """Prepare (read, plan), write what is known, then the keys the host made: the zone is listed once."""
    provider = make_provider(spec().dns.provider, OWNER)
    sync = DnsSync(spec(), provider)
    no_keys = HostFacts(addresses=ADDRESSES, dkim_keys={}, tls_keys={})
    assert sync.plan(no_keys)[0].plan.pending
    sync.apply(sync.plan(no_keys))
    sync.apply(sync.plan(facts(keys)))
    assert published(fake) == expected(keys)
    assert provider.requests == Requests(reads=2, writes=2)  # zone lookup, one page; two batches
    provider, states = run(spec(), facts(keys))
    assert [s.plan.changes for s in states] == [[]]


def test_a_record_this_run_wrote_is_read_again_before_it_changes(fake, spec, keys):
    """Cloudflare changes a record by its id, which a write does not tell: such a set is read again first."""
    provider = make_provider(spec().dns.provider, OWNER)
    sync = DnsSync(spec(), provider)
    sync.apply(sync.plan(facts(keys)))
    other = {**keys, "mail": spki()}
    sync.apply(sync.plan(facts(other)))
    assert published(fake) == expected(other)
    assert provider.requests == Requests(reads=3, writes=2)  # one page more, before the second write


def test_values_cloudflare_spells_differently_read_as_the_same(fake, spec, keys):
    """Float priorities (the SDK's 10.0), bare (unquoted) TXT and any TXT split give no perpetual diff."""
    key = keys["mail"]
    fake.add_record("example.org", "MX", "example.org", "mail.example.org", 3600, priority=10, comment=COMMENT)
    fake.add_record("example.org", "TXT", "mail._domainkey", f"v=DKIM1; k=rsa; p={key}", 3600, comment=COMMENT)
    fake.add_record("example.org", "TXT", "_dmarc", '"v=DMARC1; p=quaran" "tine; rua=mailto:postmaster@example.org"',
                    3600, comment=COMMENT)
    provider = make_provider(spec().dns.provider, OWNER)
    mx = next(r for r in provider.records(provider.zone("example.org")) if r.rdtype == "MX")
    assert mx.rdata.preference == 10 and mx.rdata.to_text() == "10 mail.example.org."

    provider, states = run(spec(), facts(keys))
    created = sorted((c.action, c.name, c.rdtype) for c in states[0].plan.changes)
    assert created == sorted([("create", "_25._tcp.mail.example.org", "TLSA"),
                              ("create", "_smtp._tls.example.org", "TXT"), ("create", "example.org", "TXT"),
                              ("create", "mail.example.org", "A"), ("create", "mail.example.org", "AAAA"),
                              ("create", "mail.example.org", "CAA"),
                              ("create", "ed25519._domainkey.example.org", "TXT")]
                             + [("create", name, rtype) for name, rtype, _ in web_records("example.org")])
    assert published(fake) == expected(keys)


def test_every_page_is_read(fake, spec, keys):
    fake.page_size_cap = 100  # a zone of 252 records comes in three pages
    for i in range(250):
        fake.add_record("example.org", "A", f"host{i}", f"198.51.100.{i % 250 + 1}")
    fake.add_record("example.org", "TXT", "stale._domainkey", "v=DKIM1; p=", comment=COMMENT)  # on page 3
    fake.add_record("example.org", "MX", "example.org", "mx.elsewhere.example", priority=5)  # on page 3

    with pytest.raises(DnsError, match="example.org MX.*was not made by mailhost"):
        run(spec(), facts(keys))  # the unowned MX on the last page is seen
    assert fake.requests[LIST] == 3 and fake.writes == 0

    provider, _ = run(spec(adopt=["example.org MX"]), facts(keys))
    assert provider.requests == Requests(reads=4, writes=1)
    assert not fake.records("example.org", name="stale._domainkey.example.org")  # ours, no longer wanted
    assert len(fake.records("example.org", "A")) == 251  # 250 others' + the host's


def test_others_records_are_left_alone(fake, spec, keys):
    theirs = [fake.add_record("example.org", "TXT", "example.org", "google-site-verification=abc123"),
              fake.add_record("example.org", "A", "www", "203.0.113.80", proxied=True),
              fake.add_record("example.org", "TXT", "sel2._domainkey", "v=DKIM1; p=other",
                              comment="mailhost owner=other-host")]
    before = {r["id"]: r for r in fake.records("example.org") if r["id"] in theirs}

    run(spec(), facts(keys))
    after = {r["id"]: r for r in fake.records("example.org") if r["id"] in theirs}
    assert after == before
    assert len(fake.records("example.org")) == len(expected(keys)) + 3


def test_an_unowned_record_is_a_conflict_until_adopted(fake, spec, keys):
    fake.add_record("example.org", "MX", "example.org", "mx.old.example", 300, priority=10)
    with pytest.raises(DnsError, match=r"example.org MX: 10 mx.old.example. was not made by mailhost.*dns.adopt"):
        run(spec(), facts(keys))
    assert fake.writes == 0

    run(spec(adopt=["example.org MX"]), facts(keys))
    [mx] = fake.records("example.org", "MX")
    assert (mx["content"], mx["priority"], mx["comment"]) == ("mail.example.org", 10, COMMENT)
    assert published(fake) == expected(keys)


def test_adopting_a_record_with_the_right_value_keeps_it_and_tags_it(fake, spec, keys):
    record_id = fake.add_record("example.org", "MX", "example.org", "mail.example.org", 3600, priority=10)
    run(spec(adopt=["example.org MX"]), facts(keys))
    [mx] = fake.records("example.org", "MX")
    assert (mx["id"], mx["ttl"], mx["comment"]) == (record_id, 3600, COMMENT)
    _, states = run(spec(), facts(keys))  # now ours: no adopt needed, nothing to do
    assert states[0].plan.changes == []


def test_records_we_no_longer_want_are_deleted_others_never(fake, spec, keys):
    other = fake.add_record("example.org", "TXT", "x._domainkey", "v=DKIM1; p=x", comment="mailhost owner=other")
    run(spec(selectors=("mail", "old")), facts(keys, ("mail", "old")))
    assert published(fake) == sorted(expected(keys, ("mail", "old")) +
                                     [("x._domainkey.example.org", "TXT", "v=DKIM1; p=x")])

    run(spec(selectors=("mail",)), facts(keys))
    assert published(fake) == sorted(expected(keys) + [("x._domainkey.example.org", "TXT", "v=DKIM1; p=x")])
    assert [r["id"] for r in fake.records("example.org", name="x._domainkey.example.org")] == [other]


def test_many_zones_are_worked_on_in_parallel_one_batch_each(fake, spec, keys):
    """Zones are read and written several at once (Provider.parallel_zones); each still gets exactly one
    batch, the counts stay exact, and the states come back in the spec's order."""
    others = [f"d{i}.example" for i in range(12)]
    for name in others:
        fake.add_zone(name)
    the_spec = spec(domains=("example.org", *others))
    many = HostFacts(addresses=ADDRESSES, dkim_keys=dkim_keys(keys, ("example.org", *others)),
                     tls_keys={"mail.example.org": keys["tls"], "mail.example.org-b": keys["tls"]})
    provider, states = run(the_spec, many)
    assert [s.zone.name for s in states] == ["example.org", *others]
    assert fake.requests[BATCH] == 13 and provider.requests == Requests(reads=2 * 13, writes=13)
    for name in others:
        # SPF, DMARC, two DKIM, TLS-RPT, _mta-sts; mta-sts and autoconfig; six SRV (the host name's TLSA and
        # CAA are in example.org)
        assert sorted(r["type"] for r in fake.records(name)) == ["CNAME"] * 2 + ["MX"] + ["SRV"] * 6 + ["TXT"] * 6
    provider, states = run(the_spec, many)
    assert provider.requests == Requests(reads=2 * 13, writes=0)


def test_a_zone_that_keeps_failing_does_not_stop_the_others(fake, spec, keys):
    """Each zone is its own unit of work: the failing one is named, every other zone is complete, and the
    next run writes only what is missing."""
    broken = fake.add_zone("broken.example")
    fake.add_zone("fine.example")
    for _ in range(3):  # every attempt (WRITE_ATTEMPTS) fails before the write
        fake.inject("500", method="POST", path_contains=f"{broken}/dns_records/batch")
    the_spec = spec(domains=("example.org", "broken.example", "fine.example"))
    many = HostFacts(addresses=ADDRESSES, dkim_keys=dkim_keys(keys, ("example.org", "broken.example", "fine.example")),
                     tls_keys={"mail.example.org": keys["tls"], "mail.example.org-b": keys["tls"]})
    with pytest.raises(DnsError, match="zone broken.example: writes keep failing"):
        run(the_spec, many)
    assert fake.records("broken.example") == []
    assert set(expected(keys)) <= set(published(fake)) and len(fake.records("fine.example")) == PER_DOMAIN
    provider, states = run(the_spec, many)
    assert provider.requests.writes == 1 and len(fake.records("broken.example")) == PER_DOMAIN


def sync_seeing_posts(the_spec, keys):
    """Sync every record of `the_spec` once; (the provider, the records it posted as it handed them to the SDK)."""
    sent: list[dict] = []
    provider = make_provider(the_spec.dns.provider, OWNER)
    original = provider.writer.dns.records.batch

    def batch(**kwargs):
        sent.extend(kwargs.get("posts", []))
        return original(**kwargs)
    provider.writer.dns.records.batch = batch
    sync = DnsSync(the_spec, provider)
    sync.apply(sync.plan(facts(keys)))
    return provider, sent


def test_caa_and_tlsa_are_written_through_data_and_read_back_from_the_content_cloudflare_shows(fake, spec, keys):
    """Cloudflare takes CAA and TLSA as a structured `data` object (their `content` is its read-only rendering):
    the provider sends `data` alone, reads the content back as the same records, and a re-run writes nothing."""
    provider, sent = sync_seeing_posts(spec(), keys)
    posted = {p["type"]: p for p in sent if p["type"] in ("CAA", "TLSA")}
    digest = tlsa(keys["tls"]).split()[-1]
    assert posted["CAA"]["data"] == {"flags": 0, "tag": "issue", "value": "letsencrypt.org"}
    assert posted["TLSA"]["data"] == {"usage": 3, "selector": 1, "matching_type": 1, "certificate": digest}
    assert "content" not in posted["CAA"] and "content" not in posted["TLSA"]

    [caa] = fake.records("example.org", "CAA")
    assert (caa["name"], caa["content"], caa["data"], caa["comment"]) == (
        "mail.example.org", '0 issue "letsencrypt.org"', posted["CAA"]["data"], COMMENT)
    [record] = fake.records("example.org", "TLSA")
    assert (record["name"], record["content"], record["data"], record["comment"]) == (
        "_25._tcp.mail.example.org", f"3 1 1 {digest}", posted["TLSA"]["data"], COMMENT)

    read = {(r.name, r.rdtype): r for r in provider.records(provider.zone("example.org"))}
    assert read["mail.example.org", "CAA"].rdata == rdata("CAA", '0 issue "letsencrypt.org"')
    assert read["_25._tcp.mail.example.org", "TLSA"].rdata == rdata("TLSA", tlsa(keys["tls"]))
    assert read["mail.example.org", "CAA"].owner == read["_25._tcp.mail.example.org", "TLSA"].owner == OWNER

    writes = fake.writes
    again, states = run(spec(), facts(keys))
    assert states[0].plan.changes == [] and again.requests == Requests(reads=2, writes=0) and fake.writes == writes


def test_srv_is_written_through_data_and_read_back_from_the_content_cloudflare_shows(fake, spec, keys):
    """Cloudflare takes an SRV as `data` {priority, weight, port, target} and shows `content` "weight port
    target" with the priority beside it: the client SRV records (the null "0 0 0 ." of a service not offered
    too) are sent as data, stored as Cloudflare shows them, read back as the same records, and a re-run is free."""
    provider, sent = sync_seeing_posts(spec(), keys)
    posted = {p["name"]: p for p in sent if p["type"] == "SRV"}
    assert set(posted) == {f"{label}.example.org" for label in ("_submissions._tcp", "_submission._tcp", "_imaps._tcp",
                                                               "_imap._tcp", "_pop3s._tcp", "_pop3._tcp")}
    assert posted["_imaps._tcp.example.org"]["data"] == {"priority": 0, "weight": 1, "port": 993,
                                                         "target": "mail.example.org"}
    assert posted["_submission._tcp.example.org"]["data"] == {"priority": 10, "weight": 1, "port": 587,
                                                              "target": "mail.example.org"}
    assert posted["_pop3._tcp.example.org"]["data"] == {"priority": 0, "weight": 0, "port": 0, "target": "."}
    for post in posted.values():
        assert "content" not in post and post["priority"] == post["data"]["priority"]

    stored = {r["name"]: r for r in fake.records("example.org", "SRV")}
    assert {name: (r["priority"], r["content"], r["comment"]) for name, r in stored.items()} == {
        "_submissions._tcp.example.org": (0, "1 465 mail.example.org", COMMENT),
        "_submission._tcp.example.org": (10, "1 587 mail.example.org", COMMENT),
        "_imaps._tcp.example.org": (0, "1 993 mail.example.org", COMMENT),
        "_imap._tcp.example.org": (10, "1 143 mail.example.org", COMMENT),
        "_pop3s._tcp.example.org": (0, "0 0 .", COMMENT),
        "_pop3._tcp.example.org": (0, "0 0 .", COMMENT)}
    assert all(stored[name]["data"] == post["data"] for name, post in posted.items())

    read = {r.name: r for r in provider.records(provider.zone("example.org")) if r.rdtype == "SRV"}
    assert read["_imaps._tcp.example.org"].rdata == rdata("SRV", "0 1 993 mail.example.org.")
    assert read["_submission._tcp.example.org"].rdata == rdata("SRV", "10 1 587 mail.example.org.")
    assert read["_pop3._tcp.example.org"].rdata == read["_pop3s._tcp.example.org"].rdata == rdata("SRV", "0 0 0 .")
    assert {r.owner for r in read.values()} == {OWNER}

    writes = fake.writes
    again, states = run(spec(), facts(keys))
    assert states[0].plan.changes == [] and again.requests == Requests(reads=2, writes=0) and fake.writes == writes


@pytest.mark.parametrize("rtype,content", [("CAA", '0 issue "letsencrypt.org"'),
                                           ("TLSA", "3 1 1 " + "ab" * 32),
                                           ("SRV", "1 993 mail.example.org")])
def test_the_fake_refuses_data_types_given_as_content_only(fake, rtype, content):
    """As Cloudflare does: for these types `content` is read-only, the value goes in `data` (error 9101)."""
    client = cloudflare.Cloudflare(api_token=fake.token, base_url=fake.url, max_retries=0)
    zone_id = fake.zone("example.org").id
    post = {"type": rtype, "name": "mail.example.org", "ttl": 3600, "content": content, "comment": COMMENT}
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.dns.records.batch(zone_id=zone_id, posts=[post])
    assert 9101 in _codes(caught.value) and fake.records("example.org") == []
    with pytest.raises(cloudflare.BadRequestError) as caught:  # the single-record endpoint too
        client.dns.records.create(zone_id=zone_id, **post)
    assert 9101 in _codes(caught.value) and fake.records("example.org") == []


# -- failures ---------------------------------------------------------------------------------------
def test_rate_limited_batch_waits_retry_after_then_succeeds(fake, spec, keys):
    fake.inject("429", method="POST", path_contains="/batch", retry_after="1")
    started = time.monotonic()
    provider, _ = run(spec(), facts(keys))
    assert time.monotonic() - started >= 1
    assert fake.requests[BATCH] == 2 and provider.requests == Requests(reads=2, writes=2)
    assert published(fake) == expected(keys)


@pytest.mark.parametrize("fault, batches", [("500", 2), ("drop", 2), ("500-after", 1), ("drop-after", 1)])
def test_uncertain_writes_are_reread_not_replayed(fake, spec, keys, fault, batches):
    """Before commit: the re-read finds nothing written and writes again. After commit: the re-read finds
    everything there and writes nothing. Either way each record exists once."""
    fake.inject(fault, method="POST", path_contains="/batch")
    provider, states = run(spec(), facts(keys))
    assert published(fake) == expected(keys)  # exact list: nothing duplicated
    assert fake.requests[BATCH] == batches
    assert provider.requests == Requests(reads=3, writes=batches)  # zone, records, records again
    # the re-plan after the uncertain write: nothing, or every set again
    assert len(states[0].plan.changes) == (0 if batches == 1 else len(expected(keys)))


def test_identical_record_written_meanwhile_is_reread(fake, spec, keys):
    """81058 (our earlier write landed after all, or another run of ours): re-read, then only the rest."""
    provider = make_provider(spec().dns.provider, OWNER)
    sync = DnsSync(spec(), provider)
    states = sync.plan(facts(keys))
    fake.add_record("example.org", "MX", "example.org", "mail.example.org", 3600, priority=10, comment=COMMENT)
    sync.apply(states)
    assert published(fake) == expected(keys)
    assert fake.requests[BATCH] == 2 and len(fake.records("example.org", "MX")) == 1


def test_record_removed_meanwhile_is_reread(fake, spec, keys):
    """81044 (someone deleted a record the plan changes): nothing was written; re-read, then re-plan."""
    run(spec(selectors=("mail", "old")), facts(keys, ("mail", "old")))
    sync = DnsSync(spec(), make_provider(spec().dns.provider, OWNER))
    states = sync.plan(facts(keys))  # deletes old._domainkey
    [old] = fake.records("example.org", name="old._domainkey.example.org")
    fake.remove_record("example.org", old["id"])
    final = sync.apply(states)
    assert final[0].plan.changes == [] and published(fake) == expected(keys)
    assert fake.requests[BATCH] == 2  # the first run's, and the refused one


def test_a_refused_change_names_the_zone_and_cloudflares_error(fake, spec, keys):
    """The plan never asks for a TTL Cloudflare refuses (below); a change that does gets Cloudflare's own words."""
    provider = make_provider(spec().dns.provider, OWNER)
    zone = provider.zone("example.org")
    bad = RecordSet("example.org", "MX", 30, frozenset([rdata("MX", "10 mail.example.org.")]), "mail")
    with pytest.raises(DnsError, match=r"zone example.org: Cloudflare refused the changes .*1004 DNS Validation "
                                       r"Error \(9021 TTL must be between 60"):
        provider.apply(zone, [Change("create", "example.org", "MX", (), bad)])
    assert fake.requests[BATCH] == 1 and fake.records("example.org") == []


@pytest.mark.parametrize("ttl,kept", [(30, 60), (604800, 86400)])
def test_a_ttl_outside_cloudflares_range_is_planned_at_its_limit_and_converges(fake, spec, keys, ttl, kept):
    """Cloudflare keeps 60-86400 s: the plan says so once, publishes at the limit, and the next run is free."""
    provider, states = run(spec(ttl=ttl), facts(keys))
    assert states[0].plan.notes == [f"ttl {ttl} planned as {kept}: the provider keeps TTLs of 60-86400 s"]
    assert {r["ttl"] for r in fake.records("example.org")} == {kept}
    writes = fake.writes
    provider, states = run(spec(ttl=ttl), facts(keys))
    assert states[0].plan.changes == [] and fake.writes == writes


def test_failed_reads_are_retried_and_counted(fake, spec, keys):
    fake.inject("500", method="GET", path_contains="/dns_records")
    provider = make_provider(spec().dns.provider, OWNER)
    assert provider.records(provider.zone("example.org")) == []
    assert provider.requests == Requests(reads=3, writes=0)


def test_wrong_token_is_a_clear_error_without_the_token(fake, spec, keys, monkeypatch):
    the_spec = spec()
    secret = "wrong-token-0123456789abcdef"
    monkeypatch.setenv(TOKEN_ENV, secret)
    provider = make_provider(the_spec.dns.provider, OWNER)
    with pytest.raises(DnsError) as caught:
        DnsSync(the_spec, provider).plan(facts(keys))
    message = str(caught.value)
    assert TOKEN_ENV in message and "10000 Authentication error" in message and "zone example.org" in message
    shown = "".join(traceback.format_exception(caught.value)) + repr(provider) + provider.describe()
    assert secret not in shown and fake.token not in shown
    assert fake.writes == 0


def test_missing_token_fails_before_any_request(fake, spec, monkeypatch, tmp_path):
    the_spec = spec()
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(DnsError, match=f"dns.provider.api_token_env: environment variable {TOKEN_ENV} is not set"):
        make_provider(the_spec.dns.provider, OWNER)
    assert sum(fake.requests.values()) == 0

    (tmp_path / "cf.token").write_text(fake.token + "\n")
    from_file = spec(provider={"kind": "cloudflare", "endpoint": fake.url, "api_token_file": "cf.token"},
                     base_dir=tmp_path)
    provider = make_provider(from_file.dns.provider, OWNER, tmp_path)
    assert provider.zone("example.org").name == "example.org"


@pytest.mark.parametrize("bad", ["tok-en\nsecond-line-0123", "toké-0123456789", "two words 0123456789",
                                 "tab\tsecret-0123456789", "nul\0secret-0123456789"])
def test_a_malformed_token_is_refused_unshown_before_any_request(fake, spec, monkeypatch, tmp_path, bad):
    """A token with a line break, space or non-ASCII character would reach an HTTP header, and the HTTP
    library's error would carry it whole: refused first, from the environment or from a file, unshown."""
    the_spec = spec()
    if "\0" not in bad:  # an environment variable cannot hold a NUL
        monkeypatch.setenv(TOKEN_ENV, bad)
    (tmp_path / "cf.token").write_text(bad + "\n")
    from_file = spec(provider={"kind": "cloudflare", "endpoint": fake.url, "api_token_file": "cf.token"},
                     base_dir=tmp_path)
    sources = [(the_spec.dns.provider, "api_token_env")] * ("\0" not in bad) + [
        (from_file.dns.provider, "api_token_file")]
    for config, where in sources:
        with pytest.raises(DnsError, match=f"dns.provider.{where}.*holds more than the API token") as caught:
            make_provider(config, OWNER, tmp_path)
        shown = "".join(traceback.format_exception(caught.value))
        assert not any(part in shown for part in bad.replace("\0", " ").split() if len(part) > 4), shown
    assert sum(fake.requests.values()) == 0


def test_unknown_zone_stops_the_run_before_any_write(fake, spec, keys):
    with pytest.raises(ZoneNotFound, match="zone 'example.net' not found in the Cloudflare account"):
        run(spec(domains=("example.org", "example.net")), facts(keys))
    assert fake.writes == 0 and fake.records("example.org") == []


# -- DNSSEC -----------------------------------------------------------------------------------------
def test_dnssec_is_turned_on_and_reports_the_ds_of_the_zone_key(fake, spec):
    provider = make_provider(spec().dns.provider, OWNER)
    zone = provider.zone("example.org")
    assert provider.signing(zone, enable=False).status == "disabled"
    assert fake.requests["PATCH /zones/:id/dnssec"] == 0

    signing = provider.signing(zone, enable=True)
    wanted = normal_ds(dns.dnssec.make_ds("example.org.", fake.dnskey("example.org"), "SHA256").to_text())
    assert (signing.signed, signing.status, [normal_ds(d) for d in signing.ds]) == (True, "pending", [wanted])
    assert "registrar" in signing.note

    fake.activate_dnssec("example.org")
    active = provider.signing(zone, enable=True)
    assert (active.status, active.signed, active.note) == ("active", True, "")
    assert fake.requests["PATCH /zones/:id/dnssec"] == 1


# -- the fake itself (what the tests above rely on) ----------------------------------------------------
def test_fake_follows_the_documented_api(fake):
    api = httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"})
    zone_id = fake.zone("example.org").id
    records = f"/zones/{zone_id}/dns_records"

    assert httpx.get(fake.url + "/zones").json()["errors"][0]["code"] == 6003
    assert api.get(f"/zones/{'0' * 32}/dns_records").json()["errors"][0]["code"] == 7003
    assert api.get(records, params={"per_page": 0}).status_code == 400
    made = api.post(records, json={"type": "A", "name": "www", "content": "192.0.2.1", "ttl": 1}).json()
    assert made["success"] and made["result"]["name"] == "www.example.org"
    assert api.post(records, json={"type": "A", "name": "www.example.org", "content": "192.0.2.1",
                                   "ttl": 1}).json()["errors"][0]["code"] == 81058
    assert api.post(records, json={"type": "CNAME", "name": "www", "content": "x.example",
                                   "ttl": 1}).json()["errors"][0]["code"] == 81053

    # A batch is all or nothing: the bad post undoes the delete before it.
    answer = api.post(records + "/batch", json={"deletes": [{"id": made["result"]["id"]}],
                                                "posts": [{"type": "A", "name": "x", "content": "::1", "ttl": 1}]})
    assert answer.status_code == 400 and answer.json()["errors"][0]["error_chain"][0]["code"] == 9005
    assert [r["id"] for r in fake.records("example.org")] == [made["result"]["id"]]
    listing = api.get(records, params={"per_page": 5}).json()
    assert listing["result_info"] == {"page": 1, "per_page": 5, "count": 1, "total_count": 1, "total_pages": 1}
    assert api.delete(f"{records}/{'f' * 32}").json()["errors"][0]["code"] == 81044
