"""RFC 2136 against the lab's real BIND: publish, read back, DNSSEC-validate, ownership, concurrency."""

from __future__ import annotations

import base64
import json
import time
import uuid

import dns.name
import dns.rcode
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailhost.dns import signing
from mailhost.dns.providers import ConcurrentChange, DnsError, ZoneNotFound, make_provider
from mailhost.dns.records import HostFacts, desired_records, show
from mailhost.dns.sync import DnsSync
from mailhost.dnssec import Anchor, tcp_query, validate_chain
from mailhost.spec import parse_spec

pytestmark = pytest.mark.e2e


ED25519_KEY = base64.b64encode(bytes(range(32))).decode()


def dkim_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


@pytest.fixture
def zone(lab):
    """A fresh signed lab zone holding someone else's records (a site verification TXT, a web server)."""
    name = f"z{uuid.uuid4().hex[:6]}.test"
    lab.dns.add_zone(name, '@ TXT "google-site-verification=abc"\nwww A 198.18.0.99\n')
    yield name
    lab.dns.remove_zone(name)


def make_sync(lab, zone: str, tsig_file=None, **dns_extra) -> DnsSync:
    spec = parse_spec({
        "hostname": f"mail.{zone}", "domains": [{"name": zone}],
        "mailboxes": [{"address": f"postmaster@{zone}", "password_hash": "{SHA512-CRYPT}$6$x$y"}],
        "dkim": {"selectors": dns_extra.pop("selectors", ["mail"])},
        "dns": {"provider": {"kind": "rfc2136", "server": lab.cfg.nameserver,
                             "tsig_key_file": str(tsig_file or lab.dns.tsig_file)},
                "resolvers": [lab.cfg.gateway], **dns_extra}})
    return DnsSync(spec, make_provider(spec.dns.provider, spec.dns_owner))


def facts(zone: str, key: str, selectors=("mail",)) -> HostFacts:
    """Every value the host tells known (the certificates' keys: any SubjectPublicKeyInfo will do; the Ed25519
    key: any 32 bytes)."""
    return HostFacts(("198.18.0.77", "fd6d:6c68:6c61::4d"),
                     {**{(zone, s, "rsa"): key for s in selectors}, (zone, "ed25519", "ed25519"): ED25519_KEY},
                     {f"mail.{zone}": key, f"mail.{zone}-b": key})


def published(sync: DnsSync, zone: str) -> dict[tuple[str, str], set[str]]:
    records = sync.provider.records(sync.provider.zone(zone))
    found: dict[tuple[str, str], set[str]] = {}
    for r in records:
        found.setdefault((r.name, r.rdtype), set()).add(show(r.rdata))
    return found


def test_records_are_published_validated_and_a_second_apply_writes_nothing(lab, zone):
    key = dkim_key()
    sync = make_sync(lab, zone)
    states = sync.apply(sync.plan(facts(zone, key)))
    wanted = {(s.name, s.rdtype) for s in desired_records(sync.spec, facts(zone, key))}
    assert {c.action for c in states[0].plan.changes} == {"create"}
    assert {(c.name, c.rdtype) for c in states[0].plan.changes} == wanted and len(wanted) == 19
    assert sync.provider.requests.writes == 1  # one UPDATE message for the zone

    # Read back from the server: ours are there, the foreign records are untouched.
    zone_now = published(sync, zone)
    assert zone_now[(zone, "MX")] == {f"10 mail.{zone}."}
    assert zone_now[(zone, "TXT")] == {'"v=spf1 mx -all"', '"google-site-verification=abc"'}
    assert zone_now[(f"www.{zone}", "A")] == {"198.18.0.99"}
    assert zone_now[(f"mail.{zone}", "A")] == {"198.18.0.77"}

    # Validated under DNSSEC from the parent's trust anchor, the DKIM key split into 255-byte strings.
    anchor = Anchor(dns.name.from_text("test."), lab.dns.trust_anchor)
    query = tcp_query(lab.cfg.nameserver)
    dkim = validate_chain(f"mail._domainkey.{zone}", "TXT", anchor, query)
    (rdata,) = list(dkim)
    assert b"".join(rdata.strings) == f"v=DKIM1; k=rsa; p={key}".encode()
    assert max(len(s) for s in rdata.strings) == 255 and len(rdata.strings) == 2
    for name, rdtype in [(zone, "MX"), (f"_dmarc.{zone}", "TXT"), (f"mail.{zone}", "AAAA"),
                         (f"_25._tcp.mail.{zone}", "TLSA"), (f"mail.{zone}", "CAA"), (f"_mta-sts.{zone}", "TXT"),
                         (f"_submissions._tcp.{zone}", "SRV"), (f"_pop3._tcp.{zone}", "SRV"),
                         (f"autoconfig.{zone}", "CNAME")]:
        assert validate_chain(name, rdtype, anchor, query)

    # Re-run: nothing to change, no write, two reads (SOA + AXFR).
    again = make_sync(lab, zone)
    states = again.apply(again.plan(facts(zone, key)))
    assert states[0].plan.changes == [] and states[0].plan.conflicts == []
    assert (again.provider.requests.reads, again.provider.requests.writes) == (2, 0)

    report = signing.report(again.provider, states[0].zone, True, [lab.cfg.gateway])
    assert report.signed and report.parent_ok


def test_owned_records_follow_the_spec_and_foreign_ones_never_move(lab, zone):
    key = dkim_key()
    sync = make_sync(lab, zone, selectors=["mail", "old"])
    sync.apply(sync.plan(facts(zone, key, ("mail", "old"))))
    assert (f"old._domainkey.{zone}", "TXT") in published(sync, zone)

    # The spec drops a selector and tightens DMARC: our records change, nothing else does.
    sync = make_sync(lab, zone, dmarc={"policy": "reject"})
    plan = sync.plan(facts(zone, key))[0].plan
    assert sorted((c.action, c.name) for c in plan.changes) == [
        ("delete", f"old._domainkey.{zone}"), ("update", f"_dmarc.{zone}")]
    sync.apply(sync.plan(facts(zone, key)))
    after = published(sync, zone)
    assert (f"old._domainkey.{zone}", "TXT") not in after
    assert after[(f"_dmarc.{zone}", "TXT")] == {f'"v=DMARC1; p=reject; rua=mailto:postmaster@{zone}"'}
    assert after[(zone, "TXT")] == {'"v=spf1 mx -all"', '"google-site-verification=abc"'}
    assert after[(f"www.{zone}", "A")] == {"198.18.0.99"}


def test_an_existing_record_is_a_conflict_until_adopted(lab, zone):
    lab.dns.update(zone, lambda u: u.replace(dns.name.from_text(zone + "."), 300, "MX", "5 old-mx.example."))
    lab.dns.wait_served(zone + ".", "MX")
    sync = make_sync(lab, zone)
    states = sync.plan(facts(zone, dkim_key()))
    assert [(c.desired.name, c.desired.rdtype) for c in states[0].plan.conflicts] == [(zone, "MX")]
    with pytest.raises(DnsError, match=f"add '{zone} MX' to dns.adopt"):
        sync.apply(states)
    assert sync.provider.requests.writes == 0
    assert published(sync, zone)[(zone, "MX")] == {"5 old-mx.example."}

    adopting = make_sync(lab, zone, adopt=[f"{zone} MX"])
    states = adopting.apply(adopting.plan(facts(zone, dkim_key())))
    (mx,) = [c for c in states[0].plan.changes if c.rdtype == "MX"]
    assert mx.action == "update" and mx.adopt
    assert published(adopting, zone)[(zone, "MX")] == {f"10 mail.{zone}."}
    # Now it is ours: a plain spec (no adopt) sees no conflict.
    assert not make_sync(lab, zone).plan(facts(zone, dkim_key()))[0].plan.conflicts


def test_a_change_made_between_plan_and_apply_is_detected_not_overwritten(lab, zone):
    key = dkim_key()
    sync = make_sync(lab, zone)
    states = sync.plan(facts(zone, key))
    # Someone else creates the DMARC record after we read the zone.
    lab.dns.update(zone, lambda u: u.replace(dns.name.from_text(f"_dmarc.{zone}."), 300, "TXT", '"v=DMARC1; p=none"'))
    with pytest.raises(ConcurrentChange, match="changed since it was read"):
        sync.provider.apply(states[0].zone, states[0].plan.changes)
    # The sync reads the zone again on the refusal, finds the record someone else's, and refuses its plan.
    with pytest.raises(DnsError, match=rf"_dmarc\.{zone} TXT: .* was not made by mailhost"):
        sync.apply(states)
    now = published(sync, zone)
    assert now[(f"_dmarc.{zone}", "TXT")] == {'"v=DMARC1; p=none"'}
    assert (zone, "MX") not in now, "a refused update must write nothing at all"


def test_a_deploys_two_writes_are_planned_on_its_one_zone_transfer(lab, zone):
    """Prepare (read, plan), write what is known, then the keys the host made: one AXFR in all."""
    key = dkim_key()
    sync = make_sync(lab, zone)
    transfers = []
    records = sync.provider.records
    sync.provider.records = lambda *args: transfers.append(args) or records(*args)
    no_keys = HostFacts(("198.18.0.77", "fd6d:6c68:6c61::4d"), {}, {})
    assert sync.plan(no_keys)[0].plan.pending
    sync.apply(sync.plan(no_keys))
    final = sync.apply(sync.plan(facts(zone, key)))
    assert {(c.name, c.rdtype) for c in final[0].plan.changes} >= {(f"mail._domainkey.{zone}", "TXT"),
                                                                  (f"_25._tcp.mail.{zone}", "TLSA")}
    assert len(transfers) == 1 and sync.provider.requests.writes == 2
    again = make_sync(lab, zone)
    assert again.plan(facts(zone, key))[0].plan.changes == []


def test_bad_input_fails_before_any_write(lab, zone, tmp_path):
    missing = make_sync(lab, f"nothere{uuid.uuid4().hex[:4]}.test")
    with pytest.raises(ZoneNotFound, match="is not served"):
        missing.plan(facts("x.test", dkim_key()))
    assert missing.provider.requests.writes == 0

    wrong = tmp_path / "wrong.key"
    wrong.write_text('key "mailhost-lab." {\n algorithm hmac-sha256;\n secret "'
                     + base64.b64encode(b"0" * 32).decode() + '";\n};\n')
    bad_key = make_sync(lab, zone, tsig_file=wrong)
    with pytest.raises(DnsError, match="rejected the TSIG key") as err:
        bad_key.plan(facts(zone, dkim_key()))
    assert base64.b64encode(b"0" * 32).decode() not in str(err.value)
    assert bad_key.provider.requests.writes == 0

    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    with pytest.raises(DnsError, match="tsig_key_file: .* is not a BIND key file"):
        make_sync(lab, zone, tsig_file=garbage)


def test_dnssec_report_names_the_ds_to_publish_when_the_parent_lacks_it(lab, zone):
    sync = make_sync(lab, zone)
    handle = sync.provider.zone(zone)
    expected = signing.ds_of_keys(zone, [k for k in lab.dns.dnskeys(zone)])
    lab.dns.update("test.", lambda u: u.delete(dns.name.from_text(zone + "."), "DS"))
    deadline = time.monotonic() + 10  # BIND's inline signing publishes the change a moment later
    while lab.dns.query_auth(zone + ".", "DS").answer:
        assert time.monotonic() < deadline, f"the DS of {zone} is still served"
        time.sleep(0.05)
    report = signing.report(sync.provider, handle, True, [lab.cfg.nameserver])
    assert report.signed and not report.parent_ok and report.at_parent == ()
    assert report.ds == expected
    assert any(f"{zone}. IN DS {expected[0]}" in line for line in report.lines())


def test_the_dns_command_plans_and_applies_without_the_host(lab, zone, tmp_path, capsys):
    from mailhost.cli import main
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({
        "hostname": f"mail.{zone}", "domains": [{"name": zone}], "addresses": {"ipv4": "198.18.0.77"},
        "mailboxes": [{"address": f"postmaster@{zone}", "password_hash": "{SHA512-CRYPT}$6$x$y"}],
        "dns": {"provider": {"kind": "rfc2136", "server": lab.cfg.nameserver,
                             "tsig_key_file": str(lab.dns.tsig_file)}, "resolvers": [lab.cfg.nameserver]}}))
    secret = lab.dns.tsig.secret

    assert main(["dns", "plan", "--json", str(spec_file)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {(c["action"], c["type"]) for c in plan["zones"][0]["changes"]} == {
        ("create", "A"), ("create", "MX"), ("create", "TXT"), ("create", "CAA"), ("create", "CNAME"),
        ("create", "SRV")}
    assert sorted(p["name"] for p in plan["zones"][0]["pending"]) == [  # the host's keys
        f"_25._tcp.mail.{zone}", f"ed25519._domainkey.{zone}", f"mail._domainkey.{zone}"]
    assert plan["requests"]["writes"] == 0 and plan["dnssec"][0]["parent_ok"]

    assert main(["dns", "apply", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert f"+ create {zone} MX 10 mail.{zone}." in out and secret not in out
    assert main(["dns", "plan", "--json", str(spec_file)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["zones"][0]["changes"] == [] and again["requests"] == {"reads": 3, "writes": 0}



def test_two_domains_in_one_zone_publish_each_its_own_dmarc_policy(lab, zone, tmp_path, capsys):
    """Issue 15, tried as a new user would: <zone> rejects, lists.<zone> quarantines, no zones listed. Both
    domains' records land in the one zone at the provider, each DMARC record says exactly its own policy,
    and verify's DMARC check finds each policy as the spec has it."""
    from mailhost.cli import main
    from mailhost.verify import lookup_with
    from mailhost.verify.checks import dns as dns_checks
    from mailhost.verify.checks.dmarc import check_dmarc
    lists = f"lists.{zone}"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({
        "hostname": f"mail.{zone}", "addresses": {"ipv4": "198.18.0.77"},
        "domains": [{"name": zone, "dmarc": {"policy": "reject"}}, {"name": lists, "dmarc": {"policy": "quarantine"}}],
        "mailboxes": [{"address": f"postmaster@{zone}", "password_hash": "{SHA512-CRYPT}$6$x$y"}],
        "dns": {"provider": {"kind": "rfc2136", "server": lab.cfg.nameserver,
                             "tsig_key_file": str(lab.dns.tsig_file)}, "resolvers": [lab.cfg.nameserver]}}))
    assert main(["dns", "apply", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert f"+ create {lists} MX 10 mail.{zone}." in out
    authoritative = lookup_with(dns_checks.resolver([lab.cfg.nameserver]))
    assert authoritative(f"_dmarc.{zone}", "TXT") == [f"v=DMARC1; p=reject; rua=mailto:postmaster@{zone}"]
    assert authoritative(f"_dmarc.{lists}", "TXT") == [f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{lists}"]
    assert authoritative(lists, "MX") == [f"10 mail.{zone}"]
    for domain, policy in ((zone, "reject"), (lists, "quarantine")):
        results = check_dmarc(domain, authoritative, [zone, lists], policy)
        assert [(r.status.name, r.message) for r in results][0] == ("OK", f"DMARC policy p={policy}")
    # The other domain's policy is not this one's: verify would say so.
    [wrong, *_] = check_dmarc(lists, authoritative, [zone, lists], "reject")
    assert wrong.status.name == "WARN" and "the spec says p=reject" in wrong.message


def test_a_ttl_above_the_servers_cap_converges_and_others_keep_their_ttl(lab, zone):
    """The lab's BIND signs with `max-zone-ttl 3600` and the spec asks for 7200: the first sync publishes, the
    next plan recognises the server's cap (said once) and writes nothing. The site verification TXT that the
    SPF record joins keeps its own TTL (60; one TTL per record set)."""
    key = dkim_key()
    sync = make_sync(lab, zone, ttl=7200)
    sync.apply(sync.plan(facts(zone, key)))
    ttls = {(r.name, r.rdtype): r.ttl for r in sync.provider.records(sync.provider.zone(zone))}
    assert ttls[(zone, "TXT")] == 60, ttls
    assert ttls[(zone, "MX")] < 7200, f"the lab's BIND no longer caps TTLs: {ttls}"

    again = make_sync(lab, zone, ttl=7200)
    states = again.apply(again.plan(facts(zone, key)))
    assert states[0].plan.changes == [], states[0].plan.lines()
    assert f"ttl 7200 stored as {ttls[(zone, 'MX')]} by the server (its maximum): planned as " \
           f"{ttls[(zone, 'MX')]}" in states[0].plan.notes
    assert again.provider.requests.writes == 0
