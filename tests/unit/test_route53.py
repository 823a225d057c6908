"""The Route53 provider through boto3 against moto's server over HTTP (lab.route53_api): what a
sync publishes, what it leaves alone, paging, atomic batches, lost answers and throttling. Route53's
DNSSEC calls and Route 53 Domains' DS calls, which moto lacks, go through botocore's Stubber (the
service model checks every request and answer); KMS and STS are moto's."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os

import dns.dnssec
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from botocore.httpsession import URLLib3Session
from botocore.stub import ANY, Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailhost.dns.plan import Change
from mailhost.dns.providers import ConcurrentChange, DnsError, WriteUncertain, ZoneNotFound, make_provider
from mailhost.dns.providers import route53_names
from mailhost.dns.providers.route53 import Route53Provider, _name, batches
from mailhost.dns.providers.route53_names import covers, in_order
from mailhost.dns.providers.route53_zones import cache_file
from mailhost.dns.records import HostFacts, RecordSet, rdata, txt, txt_value
from mailhost.dns.signing import ds_of_keys, normal_ds
from mailhost.dns.sync import DnsSync
from lab.route53_api import MotoRoute53
from mailhost.spec import parse_spec

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86
SECRET = "fakeSECRETvalue0123456789"  # must never show up in an error
OWNER = "mail-example-org"
ADDRESSES = ("192.0.2.25", "2001:db8::25")
NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def spki() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def server():
    with MotoRoute53() as aws:
        yield aws


@pytest.fixture(scope="module")
def dkim() -> str:
    return spki()


@pytest.fixture
def aws(server, monkeypatch, tmp_path):
    """The server emptied, and an environment whose only AWS credentials are fake ones (no ~/.aws, no
    instance metadata: nothing is asked beyond 127.0.0.1), and no zone IDs remembered from other tests."""
    server.reset()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return server


@pytest.fixture
def zone_id(aws) -> str:
    return aws.create_zone("example.org")


def make_spec(aws: MotoRoute53, domains=("example.org",), dkim: dict | None = None, **dns):
    return parse_spec({
        "hostname": "mail.example.org",
        "domains": [{"name": d} for d in domains],
        "mailboxes": [{"address": "alice@example.org", "password_hash": HASH}],
        "dns": {"provider": {"kind": "route53", "endpoint": aws.url}, **dns},
        **({"dkim": dkim} if dkim else {}),
    })


def facts(key: str) -> HostFacts:
    """Every value known: the addresses, the DKIM keys and the key of the host name's certificate (here the
    DKIM key again: any SubjectPublicKeyInfo will do)."""
    return HostFacts(addresses=ADDRESSES, dkim_keys={(d, s, a): key for d in ("example.org", "example.net")
                                                     for s, a in (("mail", "rsa"), ("ed25519", "ed25519"))},
                     tls_keys={"mail.example.org": key, "mail.example.org-b": key})


def facts_with(key: str, selector: str) -> HostFacts:
    """`facts`, and an RSA key of `selector` on the host for example.org."""
    base = facts(key)
    return HostFacts(base.addresses, {**base.dkim_keys, ("example.org", selector, "rsa"): key}, base.tls_keys)


def run(spec, host_facts: HostFacts):
    """Plan and apply with a fresh provider; returns (provider, final zone states)."""
    provider = make_provider(spec.dns.provider, spec.dns_owner)
    sync = DnsSync(spec, provider)
    return provider, sync.apply(sync.plan(host_facts))


def rrsets(aws: MotoRoute53, zone_id: str) -> dict[tuple[str, str], list[str]]:
    """The zone as Route53 holds it: (name, type) -> values (read with a client of our own)."""
    pages = aws.client().get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    return {(s["Name"].rstrip("."), s["Type"]): [v["Value"] for v in s.get("ResourceRecords", [])]
            for page in pages for s in page["ResourceRecordSets"]}


def seed(aws: MotoRoute53, zone_id: str, *sets: tuple[str, str, int, list[str]], action: str = "UPSERT") -> None:
    """Records made by someone else, in one direct batch. UPSERT by default: moto refuses a later CREATE
    identical to one in its change journal (as restoring someone's set exactly is), which Route53 does not."""
    changes = [{"Action": action, "ResourceRecordSet": {"Name": name, "Type": rdtype, "TTL": ttl,
                                                          "ResourceRecords": [{"Value": v} for v in values]}}
               for name, rdtype, ttl, values in sets]
    aws.client().change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})


def change_batches(aws: MotoRoute53) -> int:
    """ChangeResourceRecordSets requests the server received."""
    return sum(1 for service, method, path in aws.seen if service == "route53" and method == "POST"
               and path.endswith("/rrset/"))


SRV_LABELS = ("_submissions._tcp", "_submission._tcp", "_imaps._tcp", "_imap._tcp", "_pop3s._tcp", "_pop3._tcp")


def marker(claim: str | None = None) -> list[str]:
    return [f'"mailhost; owner={OWNER}' + (f"; claim={claim}" if claim else "") + '"']


# -- publishing ---------------------------------------------------------------------------------------
def test_fresh_sync_publishes_everything_in_one_batch_and_a_rerun_only_reads(aws, zone_id, dkim):
    spec = make_spec(aws)
    provider, _ = run(spec, facts(dkim))
    assert change_batches(aws) == 1 and provider.requests.writes == 1
    assert provider.requests.reads == 3  # the zone, one page of records, GetChange until INSYNC
    zone = rrsets(aws, zone_id)
    assert zone["example.org", "MX"] == ["10 mail.example.org."]
    assert zone["mail.example.org", "A"] == ["192.0.2.25"]
    assert zone["mail.example.org", "AAAA"] == ["2001:db8::25"]
    assert zone["example.org", "TXT"] == ['"v=spf1 mx -all"']
    assert zone["_dmarc.example.org", "TXT"] == ['"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"']
    assert zone["_smtp._tls.example.org", "TXT"] == ['"v=TLSRPTv1; rua=mailto:postmaster@example.org"']
    assert zone["_25._tcp.mail.example.org", "TLSA"] == ["3 1 1 " + hashlib.sha256(base64.b64decode(dkim)).hexdigest()]
    assert zone["mail.example.org", "CAA"] == ['0 issue "letsencrypt.org"']
    assert ("mail._domainkey.example.org", "TXT") in zone
    policy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
    assert zone["_mta-sts.example.org", "TXT"] == [f'"v=STSv1; id={hashlib.sha256(policy.encode()).hexdigest()[:20]}"']
    assert zone["mta-sts.example.org", "CNAME"] == zone["autoconfig.example.org", "CNAME"] == ["mail.example.org."]
    srv = {label: zone[f"{label}.example.org", "SRV"] for label in SRV_LABELS}
    assert srv == {"_submissions._tcp": ["0 1 465 mail.example.org."],
                   "_submission._tcp": ["10 1 587 mail.example.org."],
                   "_imaps._tcp": ["0 1 993 mail.example.org."], "_imap._tcp": ["10 1 143 mail.example.org."],
                   "_pop3s._tcp": ["0 0 0 ."], "_pop3._tcp": ["0 0 0 ."]}  # POP3 off: "not offered"
    for name, rdtype in [("example.org", "MX"), ("mail.example.org", "A"), ("mail.example.org", "AAAA"),
                         ("mail._domainkey.example.org", "TXT"), ("_dmarc.example.org", "TXT"),
                         ("_smtp._tls.example.org", "TXT"), ("_25._tcp.mail.example.org", "TLSA"),
                         ("mail.example.org", "CAA"), ("mta-sts.example.org", "CNAME"), ("_mta-sts.example.org", "TXT"),
                         ("autoconfig.example.org", "CNAME")] + [(f"{label}.example.org", "SRV")
                                                                for label in SRV_LABELS]:
        assert zone[f"_mailhost.{rdtype.lower()}.{name}", "TXT"] == marker()
    assert zone["_mailhost.txt.example.org", "TXT"] == marker("v=spf1")

    aws.seen.clear()
    again, states = run(spec, facts(dkim))
    assert states[0].plan.changes == [] and not states[0].plan.conflicts
    assert (again.requests.reads, again.requests.writes) == (1, 0)  # one page: the zone's ID is remembered
    assert [m for _, m, _ in aws.seen] == ["GET"]  # the server agrees


def zone_reads(aws: MotoRoute53) -> int:
    """ListResourceRecordSets requests the server received (reads of the zone's records)."""
    return sum(1 for service, method, path in aws.seen if service == "route53" and method == "GET"
               and path.endswith("/rrset"))


def test_a_deploys_two_writes_are_planned_on_its_one_reading_and_the_index_follows(aws, zone_id, dkim):
    """A deploy plans while preparing, writes what is known, then the keys the host made: one reading."""
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    sync = DnsSync(spec, provider)
    no_keys = HostFacts(addresses=ADDRESSES, dkim_keys={}, tls_keys={})
    prepared = sync.plan(no_keys)
    assert zone_reads(aws) == 1 and prepared[0].plan.pending
    first = sync.apply(sync.plan(no_keys))
    assert first[0].plan.changes and not any(c.name == "mail._domainkey.example.org" for c in first[0].plan.changes)
    second = sync.apply(sync.plan(facts(dkim)))
    assert {(c.name, c.rdtype) for c in second[0].plan.changes} >= {
        ("mail._domainkey.example.org", "TXT"), ("_25._tcp.mail.example.org", "TLSA")}
    assert zone_reads(aws) == 1  # both writes planned on the reading made while preparing
    assert change_batches(aws) == 2

    aws.seen.clear()
    again, states = run(spec, facts(dkim))  # what a run from scratch finds: nothing to do, and an index of it all
    assert states[0].plan.changes == [] and again.requests.writes == 0
    owned = {(r.name, r.rdtype) for r in again.records(states[0].zone) if r.owner == OWNER}
    index = rrsets(aws, zone_id)[route53_names.index_name("example.org"), "TXT"]
    assert route53_names.parse_index("example.org", OWNER, [txt_value(rdata("TXT", v)) for v in index]) == owned
    assert ("mail._domainkey.example.org", "TXT") in owned


def test_a_later_write_to_a_set_this_run_wrote_reads_the_zone_again(aws, zone_id, dkim):
    """Route53 needs a set's listing to replace it: one written this run is read again first."""
    spec = make_spec(aws)
    sync = DnsSync(spec, make_provider(spec.dns.provider, OWNER))
    sync.apply(sync.plan(facts(dkim)))
    assert zone_reads(aws) == 1
    sync.apply(sync.plan(facts_with(dkim, "mail")))  # the same keys: nothing to write, nothing read
    assert zone_reads(aws) == 1
    other = spki()
    states = sync.apply(sync.plan(facts(other)))  # new keys: DKIM and TLSA sets written before change again
    assert zone_reads(aws) == 2 and states[0].plan.changes
    again, states = run(spec, facts(other))
    assert states[0].plan.changes == []  # the zone holds the new keys


def test_a_2048_bit_dkim_key_is_stored_in_255_byte_strings_and_reads_back_equal(aws, zone_id, dkim):
    provider, states = run(make_spec(aws), facts(dkim))
    (value,) = rrsets(aws, zone_id)["mail._domainkey.example.org", "TXT"]
    strings = value[1:-1].split('" "')
    assert len(strings) == 2 and all(len(s.encode()) <= 255 for s in strings)
    assert "".join(strings) == f"v=DKIM1; k=rsa; p={dkim}"
    (record,) = [r for r in provider.records(states[0].zone) if r.name == "mail._domainkey.example.org"]
    assert record.rdata == txt(f"v=DKIM1; k=rsa; p={dkim}") and record.owner == OWNER


def test_every_page_is_read_and_350_foreign_sets_survive(aws, zone_id, dkim):
    # "_a..." names sort between the apex and the `_mailhost` markers, so the apex sets land on the first
    # page and their markers on the second: ownership must be matched across pages.
    foreign = [(f"_a{i:03}.example.org", "TXT", 300, [f'"foreign {i}"']) for i in range(350)]
    seed(aws, zone_id, *foreign)
    provider, _ = run(make_spec(aws), facts(dkim))
    # The zone; around our names (two pages: no index yet); the whole zone (two pages); GetChange.
    assert provider.requests.reads == 6
    zone = rrsets(aws, zone_id)
    assert all(zone[name, rdtype] == values for name, rdtype, _, values in foreign)
    assert zone["example.org", "MX"] == ["10 mail.example.org."]
    assert ("_mailhost.example.org", "TXT") in zone  # the index of our names, written with the records

    again, states = run(make_spec(aws), facts(dkim))
    # The page from the apex (the apex and the first foreign names), the page from our first underscore name
    # on (_dmarc...: ours, the host's names); the foreign sets between them were not read.
    assert states[0].plan.changes == [] and states[0].plan.existing_count < 350 + 4 + 1 + 19  # NS, SOA, ours
    assert (again.requests.reads, again.requests.writes) == (2, 0)


def crowd(aws: MotoRoute53, zone_id: str, count: int = 1000) -> None:
    """Others' A records h0...h<count> in the zone: between our underscore names and `mail` in Route53's order."""
    for start in range(0, count, 500):
        seed(aws, zone_id, *[(f"h{i}.example.org", "A", 300, [f"198.51.100.{i % 250 + 1}"])
                             for i in range(start, min(count, start + 500))])


def test_a_no_op_in_a_crowded_zone_reads_only_around_our_names(aws, zone_id, dkim):
    crowd(aws, zone_id)
    run(make_spec(aws), facts(dkim))
    aws.seen.clear()
    again, states = run(make_spec(aws), facts(dkim))
    assert states[0].plan.changes == [] and not states[0].plan.conflicts
    # A page from the apex (our underscore names, then h0...); one from `mail` (the host's names). The zone's
    # ID is the one the first run found: finding it by name would be a third request.
    assert (again.requests.reads, again.requests.writes) == (2, 0)
    assert states[0].plan.existing_count < 1000  # the thousand records in between were not read


def test_our_records_at_names_no_longer_wanted_are_found_through_the_index_and_deleted(aws, zone_id, dkim):
    crowd(aws, zone_id)
    run(make_spec(aws, dkim={"selectors": ["mail", "zz"]}), facts_with(dkim, "zz"))
    assert ("zz._domainkey.example.org", "TXT") in rrsets(aws, zone_id)
    # The selector leaves the spec and the host: nothing wanted is near it, only the index names it.
    again, states = run(make_spec(aws), facts(dkim))
    assert [(c.action, c.name) for c in states[0].plan.changes] == [("delete", "zz._domainkey.example.org")]
    zone = rrsets(aws, zone_id)
    assert ("zz._domainkey.example.org", "TXT") not in zone and ("_mailhost.txt.zz._domainkey.example.org", "TXT") \
        not in zone
    assert "TXT:zz._domainkey" not in " ".join(zone["_mailhost.example.org", "TXT"])  # the index forgot it
    third, states = run(make_spec(aws), facts(dkim))
    assert states[0].plan.changes == [] and (third.requests.reads, third.requests.writes) == (2, 0)


def test_a_zone_set_up_before_the_index_gets_one_and_is_read_by_name_after(aws, zone_id, dkim, monkeypatch):
    crowd(aws, zone_id)
    with monkeypatch.context() as before_the_index:  # as mailhost wrote zones before it kept the index
        before_the_index.setattr(Route53Provider, "_index_changes", lambda self, zone, changes: [])
        run(make_spec(aws), facts(dkim))
    assert ("_mailhost.example.org", "TXT") not in rrsets(aws, zone_id)
    upgraded, states = run(make_spec(aws), facts(dkim))
    assert states[0].plan.changes == [] and upgraded.requests.writes == 1  # the index alone
    assert "A:mail" in " ".join(rrsets(aws, zone_id)["_mailhost.example.org", "TXT"])
    after, _ = run(make_spec(aws), facts(dkim))
    assert (after.requests.reads, after.requests.writes) == (2, 0)


def test_another_owners_index_value_is_kept_beside_ours(aws, zone_id, dkim):
    theirs = '"mailhost-names; owner=other-host; A:other"'
    seed(aws, zone_id, ("_mailhost.example.org", "TXT", 3600, [theirs]))
    run(make_spec(aws), facts(dkim))
    values = rrsets(aws, zone_id)["_mailhost.example.org", "TXT"]
    assert theirs in values and any(f"owner={OWNER};" in v for v in values)
    run(make_spec(aws, dkim={"selectors": ["mail", "zz"]}), facts_with(dkim, "zz"))  # ours changes
    assert theirs in rrsets(aws, zone_id)["_mailhost.example.org", "TXT"]


def test_a_range_counts_as_read_only_where_both_name_orders_agree():
    assert covers("example.org", None, "mail.example.org")
    assert covers("example.org", "h5.example.org", "_dmarc.example.org")
    assert not covers("example.org", "h5.example.org", "mail.example.org")
    # AWS (trailing dot) puts mail-old before mail, moto after: a page ending at mail-old covers neither
    assert not covers("example.org", "mail-old.example.org", "mail.example.org")
    assert not covers("mail.example.org", "mta-sts.example.org", "mail-old.example.org")
    assert in_order(["mail.example.org", "mail-old.example.org", "_dmarc.example.org", "example.org"]) == [
        "example.org", "_dmarc.example.org", "mail-old.example.org", "mail.example.org"]


def test_many_zones_are_found_with_one_listing_of_the_accounts_zones(aws, dkim):
    names = ["example.org"] + [f"d{i}.example" for i in range(4)]
    for name in names:
        aws.create_zone(name)
    spec = make_spec(aws, domains=names)
    first, _ = run(spec, facts(dkim))
    assert first.requests.reads == 2 + 5 + 5  # the count, the zones, a page each, GetChange each
    again, states = run(spec, facts(dkim))
    assert all(s.plan.changes == [] for s in states)
    assert (again.requests.reads, again.requests.writes) == (5, 0)  # a page each: the zones' IDs are remembered
    aws.create_zone("private.example", private=True)
    with pytest.raises(DnsError, match="zone d9.example: no public Route53 hosted zone"):
        run(make_spec(aws, domains=names + ["d9.example"]), facts(dkim))


def test_the_index_lists_names_relative_to_the_zone_and_reads_back():
    keys = {("example.org", "MX"), ("mail.example.org", "A"), ("zz._domainkey.example.org", "TXT")}
    values = route53_names.index_values("example.org", OWNER, keys)
    assert values == [f"mailhost-names; owner={OWNER}; MX:@ TXT:zz._domainkey A:mail"]
    assert route53_names.parse_index("example.org", OWNER, values) == keys
    assert route53_names.parse_index("example.org", "other", values) is None
    many = {(f"host{i:04}.example.org", "A") for i in range(400)}
    long = route53_names.index_values("example.org", OWNER, many)
    assert len(long) > 1 and all(len(v) <= route53_names.INDEX_VALUE_CHARS for v in long)
    assert route53_names.parse_index("example.org", OWNER, long) == many


def test_a_foreign_value_sharing_the_apex_txt_set_is_kept_and_only_ours_removed(aws, dkim):
    org, net = aws.create_zone("example.org"), aws.create_zone("example.net")
    seed(aws, net, ("example.net", "TXT", 300, ['"google-site-verification=abc"']))
    zones = ["example.org", "example.net"]
    # DMARC reports of both domains go to example.org, which so authorises example.net's (RFC 7489 7.1).
    dmarc = {"rua": ["alice@example.org"]}
    run(make_spec(aws, domains=("example.org", "example.net"), zones=zones, dmarc=dmarc), facts(dkim))
    assert ("example.net._report._dmarc.example.org", "TXT") in rrsets(aws, org)
    assert sorted(rrsets(aws, net)["example.net", "TXT"]) == ['"google-site-verification=abc"', '"v=spf1 mx -all"']
    ttls = {s["Name"]: s["TTL"] for s in aws.client().list_resource_record_sets(HostedZoneId=net)["ResourceRecordSets"]
            if s["Type"] == "TXT"}
    assert ttls["example.net."] == 300  # the set has one TTL: theirs is kept (it went to the spec's 3600 before)

    aws.seen.clear()
    run(make_spec(aws, domains=("example.org",), zones=zones, max_change_percent=100, dmarc=dmarc), facts(dkim))
    assert change_batches(aws) == 2  # one per zone (example.org held example.net's DMARC report authorisation)
    left = rrsets(aws, net)
    assert left["example.net", "TXT"] == ['"google-site-verification=abc"']
    assert sorted(k for k in left if k[1] != "NS" and k[1] != "SOA") == [("example.net", "TXT")]
    assert not any(name.startswith("example.net._report") for name, _ in rrsets(aws, org))


def test_an_unowned_record_is_a_conflict_until_adopted(aws, zone_id, dkim):
    seed(aws, zone_id, ("example.org", "MX", 300, ["10 mx.elsewhere.example."]))
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    sync = DnsSync(make_spec(aws), provider)
    with pytest.raises(DnsError, match=r"example\.org MX: 10 mx\.elsewhere\.example\. was not made by mailhost"):
        sync.apply(sync.plan(facts(dkim)))
    assert provider.requests.writes == 0 and change_batches(aws) == 1  # the seed only

    run(make_spec(aws, adopt=["example.org MX"]), facts(dkim))
    zone = rrsets(aws, zone_id)
    assert zone["example.org", "MX"] == ["10 mail.example.org."] and zone["_mailhost.mx.example.org", "TXT"] == marker()


def test_a_route53_alias_where_we_want_records_is_never_overwritten(aws, zone_id, dkim):
    alias = {"Name": "mail.example.org", "Type": "A",
             "AliasTarget": {"HostedZoneId": zone_id, "DNSName": "web.example.org.", "EvaluateTargetHealth": False}}
    aws.client().change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": alias}]})
    with pytest.raises(DnsError, match=r"mail\.example\.org A: <Route53 alias to web\.example\.org\.> was not made"):
        run(make_spec(aws), facts(dkim))
    with pytest.raises(DnsError, match=r"mail\.example\.org A holds <Route53 alias .*nothing written"):
        run(make_spec(aws, adopt=["mail.example.org A"]), facts(dkim))
    assert change_batches(aws) == 1  # the alias itself
    assert rrsets(aws, zone_id)["mail.example.org", "A"] == []  # still the alias (no values of its own)


# -- atomicity, lost answers, throttling ---------------------------------------------------------------
def test_a_batch_route53_rejects_is_a_concurrent_change_read_again_and_planned_again(aws, zone_id, dkim):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    sync = DnsSync(spec, provider)
    states = sync.plan(facts(dkim))
    # Meanwhile someone publishes an MX. (moto rejects a CREATE of an existing set only when the
    # identical CREATE was made before; Route53 rejects any.)
    seed(aws, zone_id, ("example.org.", "MX", 3600, ["10 mail.example.org."]), action="CREATE")
    with pytest.raises(ConcurrentChange, match=r"zone example\.org changed .*name='example\.org\.', type='MX'"):
        provider.apply(states[0].zone, states[0].plan.changes)
    reads = provider.requests.reads
    # The sync reads the zone again, finds the MX someone else's, and refuses the plan: nothing written.
    with pytest.raises(DnsError, match=r"example\.org MX: 10 mail\.example\.org\. was not made by mailhost"):
        sync.apply(states)
    assert provider.requests.writes == 2 and provider.requests.reads > reads  # refused once each, then read
    assert sorted(rrsets(aws, zone_id)) == [("example.org", "MX"), ("example.org", "NS"), ("example.org", "SOA")]


class Raw:
    """The body of a made-up HTTP answer, as botocore reads it."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def route53_error(status: int, code: str, message: str) -> AWSResponse:
    body = (f'<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error>'
            f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>r1</RequestId></ErrorResponse>").encode()
    return AWSResponse("http://route53", status, {"content-type": "text/xml"}, Raw(body))


def on_write(provider: Route53Provider, answer) -> list[str]:
    """Every ChangeResourceRecordSets HTTP request the provider sends goes through `answer(request)`
    (None: on to the server); returns the list the requests are noted in."""
    sent = []

    def handler(request, **_):
        sent.append(request.url)
        return answer(request)
    provider.writer.meta.events.register("before-send.route-53.ChangeResourceRecordSets", handler)
    return sent


@pytest.mark.parametrize("applied", [True, False])
def test_a_5xx_on_a_write_is_not_replayed_but_reread(aws, zone_id, dkim, applied):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    lost = []

    def fail_once(request):
        if lost:
            return None
        if applied:  # the batch is applied, then the answer is lost
            lost.append(URLLib3Session().send(request).status_code)
        else:
            lost.append(0)
        return route53_error(500, "InternalFailure", "internal failure")
    sent = on_write(provider, fail_once)
    sync = DnsSync(spec, provider)
    states = sync.apply(sync.plan(facts(dkim)))
    assert lost == ([200] if applied else [0])
    assert len(sent) == (1 if applied else 2)  # re-read, and written again only if it had not happened
    assert bool(states[0].plan.changes) is not applied  # the final plan: re-read, nothing left to do if applied
    assert rrsets(aws, zone_id)["example.org", "MX"] == ["10 mail.example.org."]
    assert change_batches(aws) == 1


def dropped(request):
    raise ConnectionClosedError(endpoint_url=request.url)


@pytest.mark.parametrize("fault, shown", [
    (lambda request: route53_error(503, "ServiceUnavailable", "try later"), "answered 503"),
    (dropped, "no answer from Route53 \\(ConnectionClosedError\\)")], ids=["503", "dropped"])
def test_a_5xx_or_a_dropped_connection_is_write_uncertain_after_one_request(aws, zone_id, dkim, fault, shown):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    states = DnsSync(spec, provider).plan(facts(dkim))
    sent = on_write(provider, fault)
    with pytest.raises(WriteUncertain, match=shown):
        provider.apply(states[0].zone, states[0].plan.changes)
    assert len(sent) == 1 and change_batches(aws) == 0


def test_throttled_writes_are_retried_since_nothing_happened(aws, zone_id, dkim):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    provider.throttle_delay = 0
    refusals = [route53_error(400, "Throttling", "Rate exceeded"),
                route53_error(400, "PriorRequestNotComplete", "The request was rejected because Route 53 was "
                                                              "still processing a prior request.")]
    states = DnsSync(spec, provider).plan(facts(dkim))
    sent = on_write(provider, lambda request: refusals.pop(0) if refusals else None)
    provider.apply(states[0].zone, states[0].plan.changes)  # by the provider alone: no re-read to fall back on
    assert len(sent) == 3 and change_batches(aws) == 1
    assert rrsets(aws, zone_id)["example.org", "MX"] == ["10 mail.example.org."]


def test_route53s_wording_of_a_mismatched_delete_is_a_concurrent_change(aws, zone_id, dkim):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    states = DnsSync(spec, provider).plan(facts(dkim))
    message = ("[Tried to delete resource record set [name='example.org.', type='TXT'] but the values provided "
               "do not match the current values]")
    on_write(provider, lambda request: route53_error(400, "InvalidChangeBatch", message))
    with pytest.raises(ConcurrentChange, match=r"type='TXT'\] but the values provided do not match"):
        provider.apply(states[0].zone, states[0].plan.changes)


def test_other_refusals_name_the_zone_and_route53s_reason(aws, zone_id, dkim):
    spec = make_spec(aws)
    provider = make_provider(spec.dns.provider, OWNER)
    states = DnsSync(spec, provider).plan(facts(dkim))
    on_write(provider, lambda request: route53_error(400, "InvalidChangeBatch", "[RRSet of type CNAME ...]"))
    with pytest.raises(DnsError, match=r"zone example\.org: Route53 refused the change.*CNAME") as caught:
        provider.apply(states[0].zone, states[0].plan.changes)
    assert not isinstance(caught.value, ConcurrentChange)


# -- limits ------------------------------------------------------------------------------------------
def test_batches_respect_route53s_limits_and_never_split_a_record_set():
    def group(i: int, values: int = 1, value: str = "192.0.2.1") -> list[dict]:
        rrset = {"Name": f"h{i}.example.org.", "Type": "A", "TTL": 60,
                 "ResourceRecords": [{"Value": value}] * values}
        return [{"Action": "DELETE", "ResourceRecordSet": rrset}, {"Action": "CREATE", "ResourceRecordSet": rrset},
                {"Action": "UPSERT", "ResourceRecordSet": {**rrset, "Name": f"_mailhost.a.h{i}.example.org."}}]
    groups = [group(i) for i in range(1500)]  # 4 records each (the UPSERT counts twice)
    sent = batches(groups)
    assert [len(b) for b in sent] == [750, 750, 750, 750, 750, 750]  # 250 groups = 1,000 records per request
    assert [c for b in sent for c in b] == [c for g in groups for c in g]  # in order, nothing lost
    long = [group(i, value="x" * 1000) for i in range(40)]  # 4,000 characters each: 8 fit in 32,000
    assert [len(b) // 3 for b in batches(long)] == [8, 8, 8, 8, 8]
    assert batches([]) == []
    with pytest.raises(DnsError, match=r"h0\.example\.org A: too large"):
        batches([group(0, values=300)])


def test_more_changes_than_one_request_holds_go_in_several_batches(aws, zone_id):
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    wanted = [RecordSet(f"h{i}.example.org", "A", 300, frozenset({rdata("A", f"192.0.2.{i % 250}")}), "test")
              for i in range(400)]  # 3 records a set with its marker UPSERT: 333 sets per request
    provider.apply(zone, [Change("create", w.name, "A", (), w) for w in wanted])
    assert change_batches(aws) == 2 and provider.requests.writes == 2
    mine = [r for r in provider.records(zone) if r.owner == OWNER]
    assert sorted(r.name for r in mine) == sorted(w.name for w in wanted)


# -- zones, credentials ------------------------------------------------------------------------------
def test_an_unknown_zone_stops_the_run_before_any_write(aws, dkim):
    aws.create_zone("example.org", private=True)  # a private zone of the name is not the public one
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    with pytest.raises(ZoneNotFound, match=r"zone example\.org: no public Route53 hosted zone"):
        DnsSync(make_spec(aws), provider).plan(facts(dkim))
    assert provider.requests.writes == 0 and provider.requests.reads == 1


def test_two_public_zones_of_one_name_are_ambiguous(aws, dkim):
    first, second = aws.create_zone("example.org"), aws.create_zone("example.org")
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    with pytest.raises(DnsError, match="ambiguous") as caught:
        provider.zone("example.org")
    assert first in str(caught.value) and second in str(caught.value)


def test_a_remembered_zone_that_is_gone_is_found_by_name_again(aws, zone_id, dkim):
    """The ID an earlier run found names a zone deleted since (a new zone of the same name took its place):
    the run finds the zone by name, publishes into it, and remembers the new ID."""
    run(make_spec(aws), facts(dkim))
    cache = cache_file()
    table = json.loads(cache.read_text())
    (ids,) = table.values()
    assert ids == {"example.org": zone_id}
    ids["example.org"] = "Z0DELETEDZONE"
    cache.write_text(json.dumps(table))
    provider, states = run(make_spec(aws, dkim={"selectors": ["mail", "zz"]}), facts_with(dkim, "zz"))
    assert [c.name for c in states[0].plan.changes] == ["zz._domainkey.example.org"]
    assert states[0].zone.id == zone_id and ("zz._domainkey.example.org", "TXT") in rrsets(aws, zone_id)
    assert list(json.loads(cache.read_text()).values()) == [{"example.org": zone_id}]
    assert provider.requests.writes == 1


def test_a_second_zone_of_the_name_stops_a_write_to_the_remembered_one(aws, zone_id, dkim):
    """Finding a zone by name refuses two public zones of one name; a remembered ID cannot see the second,
    so before a write the zone is found by name again: nothing is written to either zone."""
    run(make_spec(aws), facts(dkim))
    second = aws.create_zone("example.org")
    noop, states = run(make_spec(aws), facts(dkim))  # reads alone: no write, no check needed
    assert states[0].plan.changes == [] and (noop.requests.reads, noop.requests.writes) == (1, 0)
    before = rrsets(aws, zone_id)
    with pytest.raises(DnsError, match="2 public Route53 hosted zones have this name.*ambiguous") as caught:
        run(make_spec(aws, dkim={"selectors": ["mail", "zz"]}), facts_with(dkim, "zz"))
    assert zone_id in str(caught.value) and second in str(caught.value)
    assert rrsets(aws, zone_id) == before and ("zz._domainkey.example.org", "TXT") not in rrsets(aws, second)
    assert change_batches(aws) == 1  # the first run's


def test_the_remembered_ids_hold_no_credential_and_a_broken_file_costs_a_request(aws, zone_id, dkim):
    run(make_spec(aws), facts(dkim))
    text = cache_file().read_text()
    assert zone_id in text and "AKIAFAKE" not in text and SECRET not in text
    for broken in ("{not json", json.dumps({account: [zone_id] for account in json.loads(text)})):
        cache_file().write_text(broken)
        again, states = run(make_spec(aws), facts(dkim))
        assert states[0].plan.changes == [] and (again.requests.reads, again.requests.writes) == (2, 0)
        assert json.loads(cache_file().read_text()) == json.loads(text)


def test_missing_credentials_fail_before_any_request(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(DnsError, match=r"no AWS credentials found \(standard chain: env"):
        make_provider(make_spec(aws).dns.provider, OWNER)
    assert aws.seen == []


def test_credential_errors_never_show_the_secret(aws, monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRET)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")  # a key id and token without the secret: partial credentials
    with pytest.raises(DnsError, match=r"incomplete AWS credentials.*AWS_SECRET_ACCESS_KEY") as caught:
        make_provider(make_spec(aws).dns.provider, OWNER)
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    spec = make_spec(aws)
    with pytest.raises(DnsError, match=r"AWS profile 'nobody' not found"):
        make_provider(type(spec.dns.provider)(kind="route53", aws_profile="nobody", endpoint=aws.url), OWNER)
    provider = make_provider(spec.dns.provider, OWNER)
    assert SECRET not in repr(provider) + repr(vars(provider)) and provider.describe() == f"route53 ({aws.url})"
    assert aws.seen == []


def test_route53_name_spelling_is_read_as_ours():
    assert _name("\\052.Example.ORG.") == "*.example.org"
    assert _name("a\\100b.example.org.") == "a@b.example.org"


# -- DNSSEC ------------------------------------------------------------------------------------------
@pytest.fixture
def ksk():
    """A real P-256 key-signing key as Route53 describes it (GetDNSSEC's KeySigningKey)."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    dnskey = dns.dnssec.make_dnskey(public, dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    ds = dns.dnssec.make_ds("example.org.", dnskey, "SHA256")
    b64 = base64.b64encode(dnskey.key).decode()
    return dnskey, {
        "Name": Route53Provider.ksk_name("example.org"), "KmsArn": "set by the test", "Flag": 257,
        "SigningAlgorithmMnemonic": "ECDSAP256SHA256", "SigningAlgorithmType": 13,
        "DigestAlgorithmMnemonic": "SHA-256", "DigestAlgorithmType": 2, "KeyTag": ds.key_tag,
        "DigestValue": ds.digest.hex().upper(), "PublicKey": b64,
        "DSRecord": f"{ds.key_tag} 13 2 {ds.digest.hex().upper()}", "DNSKEYRecord": f"257 3 13 {b64}",
        "Status": "ACTIVE", "CreatedDate": NOW, "LastModifiedDate": NOW}


def change(status: str = "INSYNC") -> dict:
    return {"ChangeInfo": {"Id": "/change/C0DNSSEC", "Status": status, "SubmittedAt": NOW}}


def dnssec(serve: str, *keys: dict) -> dict:
    return {"Status": {"ServeSignature": serve}, "KeySigningKeys": list(keys)}


def kms_key_arn(aws: MotoRoute53, zone_id: str) -> str | None:
    try:
        return aws.client("kms").describe_key(KeyId=f"alias/mailhost-dnssec/{zone_id}")["KeyMetadata"]["Arn"]
    except aws.client("kms").exceptions.NotFoundException:
        return None


def capture(client, operation: str) -> list[dict]:
    """The parameters of each `operation` call (Stubber checks them against the model, we read them)."""
    seen = []
    client.meta.events.register(f"before-parameter-build.{client.meta.service_model.service_id.hyphenize()}"
                                f".{operation}", lambda params, **_: seen.append(dict(params)))
    return seen


def test_dnssec_makes_the_kms_key_and_ksk_signs_and_hands_the_ds_to_the_registrar(aws, zone_id, ksk):
    dnskey, key = ksk
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    made = capture(provider.route53, "CreateKeySigningKey")
    with Stubber(provider.route53) as r53, Stubber(provider.domains) as domains:
        r53.add_response("get_dnssec", dnssec("NOT_SIGNING"), {"HostedZoneId": zone_id})
        r53.add_response("create_key_signing_key", {
            **change("PENDING"), "KeySigningKey": key,
            "Location": f"https://route53.amazonaws.com/2013-04-01/keysigningkey/{zone_id}/{key['Name']}"},
            {"HostedZoneId": zone_id, "KeyManagementServiceArn": ANY, "Name": "mailhost_example_org",
             "Status": "ACTIVE", "CallerReference": ANY})
        r53.add_response("get_change", change(), {"Id": ANY})
        r53.add_response("enable_hosted_zone_dnssec", change("PENDING"), {"HostedZoneId": zone_id})
        r53.add_response("get_change", change(), {"Id": ANY})
        r53.add_response("get_dnssec", dnssec("SIGNING", key), {"HostedZoneId": zone_id})
        domains.add_response("get_domain_detail", {"DomainName": "example.org", "DnssecKeys": []},
                             {"DomainName": "example.org"})
        domains.add_response("associate_delegation_signer_to_domain", {"OperationId": "op-1234"}, {
            "DomainName": "example.org",
            "SigningAttributes": {"Algorithm": 13, "Flags": 257, "PublicKey": key["PublicKey"]}})
        signing = provider.signing(zone, enable=True)
        r53.assert_no_pending_responses()
        domains.assert_no_pending_responses()
    assert signing.signed and signing.status == "signing"
    assert [normal_ds(d) for d in signing.ds] == list(ds_of_keys("example.org", [dnskey]))
    assert "Route 53 Domains operation op-1234" in signing.note

    arn = kms_key_arn(aws, zone_id)
    assert made[0]["KeyManagementServiceArn"] == arn
    kms = aws.client("kms")
    meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"], arn.split(":")[3]) == ("ECC_NIST_P256", "SIGN_VERIFY", "us-east-1")
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    route53 = [s for s in policy["Statement"] if s["Principal"] == {"Service": "dnssec-route53.amazonaws.com"}]
    sign = next(s for s in route53 if "kms:Sign" in s["Action"])
    assert sorted(sign["Action"]) == ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]
    assert sign["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"},
                                 "ArnLike": {"aws:SourceArn": f"arn:aws:route53:::hostedzone/{zone_id}"}}
    grant = next(s for s in route53 if s["Action"] == "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    admin = next(s for s in policy["Statement"] if "AWS" in s["Principal"])
    assert (admin["Principal"]["AWS"], admin["Action"]) == ("arn:aws:iam::123456789012:root", "kms:*")


def test_dnssec_rerun_changes_nothing_when_signed_and_the_registrar_has_the_ds(aws, zone_id, ksk):
    _, key = ksk
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    with Stubber(provider.route53) as r53, Stubber(provider.domains) as domains:
        r53.add_response("get_dnssec", dnssec("SIGNING", key), {"HostedZoneId": zone_id})
        domains.add_response("get_domain_detail", {"DomainName": "example.org", "DnssecKeys": [
            {"Algorithm": 13, "Flags": 257, "PublicKey": key["PublicKey"], "DigestType": 2,
             "Digest": key["DigestValue"], "KeyTag": key["KeyTag"], "Id": "ds-1"}]}, {"DomainName": "example.org"})
        signing = provider.signing(zone, enable=True)
    assert signing.signed and signing.ds == (key["DSRecord"],)
    assert signing.note == "the DS is at the registrar (Route 53 Domains)"
    assert provider.requests.writes == 0 and kms_key_arn(aws, zone_id) is None


def test_dnssec_leaves_the_ds_to_the_user_when_the_domain_is_registered_elsewhere(aws, zone_id, ksk):
    _, key = ksk
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    with Stubber(provider.route53) as r53, Stubber(provider.domains) as domains:
        r53.add_response("get_dnssec", dnssec("SIGNING", key), {"HostedZoneId": zone_id})
        domains.add_client_error("get_domain_detail", "InvalidInput", "Domain example.org not found in account",
                                 expected_params={"DomainName": "example.org"})
        signing = provider.signing(zone, enable=True)
        domains.assert_no_pending_responses()
    assert signing.signed and "not registered with Route 53 Domains" in signing.note


def test_dnssec_reuses_the_kms_key_of_a_run_that_failed_halfway(aws, zone_id, ksk):
    _, key = ksk
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    made = capture(provider.route53, "CreateKeySigningKey")
    with Stubber(provider.route53) as r53:
        r53.add_response("get_dnssec", dnssec("NOT_SIGNING"), {"HostedZoneId": zone_id})
        r53.add_client_error("create_key_signing_key", "InvalidKMSArn", "The KMS key is not usable yet",
                             http_status_code=400)
        with pytest.raises(DnsError, match="create_key_signing_key: InvalidKMSArn"):
            provider.signing(zone, enable=True)
    first = kms_key_arn(aws, zone_id)
    with Stubber(provider.route53) as r53, Stubber(provider.domains) as domains:
        r53.add_response("get_dnssec", dnssec("NOT_SIGNING"), {"HostedZoneId": zone_id})
        r53.add_response("create_key_signing_key", {**change("PENDING"), "KeySigningKey": key, "Location": "x"})
        r53.add_response("get_change", change())
        r53.add_response("enable_hosted_zone_dnssec", change("PENDING"))
        r53.add_response("get_change", change())
        r53.add_response("get_dnssec", dnssec("SIGNING", key))
        domains.add_client_error("get_domain_detail", "UnsupportedTLD", "no")
        assert provider.signing(zone, enable=True).signed
    assert [m["KeyManagementServiceArn"] for m in made] == [first, first]
    assert len(aws.client("kms").list_keys()["Keys"]) == 1


def test_dnssec_report_only_reads(aws, zone_id):
    provider = make_provider(make_spec(aws).dns.provider, OWNER)
    zone = provider.zone("example.org")
    signing = provider.signing(zone, enable=False)  # moto's GetDNSSEC: not signing, no keys
    assert (signing.signed, signing.status, signing.ds) == (False, "not_signing", ())
    assert provider.requests.writes == 0 and provider.requests.reads == 2
