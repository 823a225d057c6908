"""What the host serves over HTTPS and publishes for it (`mailhost.web`): the MTA-STS policy and its id, the
names and certificates nginx serves, the client autoconfig file, the SRV records; and the DNS record sets
each feature flag brings."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest

from mailhost import web
from mailhost.dns.records import HostFacts, desired_records, rdata, txt_value
from mailhost.services import services_on
from mailhost.spec import SpecError, parse_spec
from roles import all_packages

HASH = "{SHA512-CRYPT}$6$x$y"


def make_spec(domains=("example.org", "example.net"), hostname="mail.example.org", **features):
    return parse_spec({"hostname": hostname, "domains": [{"name": d} for d in domains],
                       "mailboxes": [{"address": f"alice@{domains[0]}", "password_hash": HASH}],
                       "features": features})


# -- the MTA-STS policy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["enforce", "testing", "none"])
def test_the_policy_is_rfc_8461_lines_ending_in_crlf(mode):
    text = web.policy(make_spec(mta_sts=mode))
    assert text == f"version: STSv1\r\nmode: {mode}\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
    assert "\n" not in text.replace("\r\n", "")  # no bare LF anywhere


def test_enforce_is_the_default_and_off_is_a_mode_of_the_spec():
    assert make_spec().features.mta_sts == "enforce" and make_spec().features.autoconfig is True
    assert make_spec(mta_sts="off").features.mta_sts == "off"
    with pytest.raises(SpecError, match="features.mta_sts"):
        make_spec(mta_sts="disabled")


def test_none_still_serves_and_publishes_a_policy_so_senders_can_drop_what_they_cached():
    """RFC 8461 8.3: before removing MTA-STS, publish mode none (with a new id) for at least max_age."""
    none = make_spec(mta_sts="none")
    assert "mta-sts.example.org" in web.web_names(none) and 443 in none.mail_tcp_ports
    assert web.policy_id(web.policy(none)) != web.policy_id(web.policy(make_spec()))


def test_the_id_is_a_digest_of_the_policy_and_changes_exactly_when_it_does():
    enforce = web.policy(make_spec())
    assert web.policy_id(enforce) == hashlib.sha256(enforce.encode()).hexdigest()[:20]
    assert len(web.policy_id(enforce)) == 20 and all(c in "0123456789abcdef" for c in web.policy_id(enforce))
    # The domains, autoconfig and POP3 are not in the policy: the id stays.
    same = [make_spec(domains=("example.org",)), make_spec(autoconfig=False), make_spec(pop3=True)]
    assert {web.policy_id(web.policy(s)) for s in same} == {web.policy_id(enforce)}
    # The mode and the MX are: a new id, so senders fetch the policy again.
    changed = [make_spec(mta_sts="testing"), make_spec(hostname="mx.example.org")]
    ids = [web.policy_id(web.policy(s)) for s in changed]
    assert len(set(ids)) == 2 and web.policy_id(enforce) not in ids


# -- names and certificates --------------------------------------------------------------------------------
@pytest.mark.parametrize("mta_sts, autoconfig, prefixes", [
    ("enforce", True, ["mta-sts", "autoconfig"]), ("testing", True, ["mta-sts", "autoconfig"]),
    ("none", False, ["mta-sts"]),
    ("enforce", False, ["mta-sts"]), ("off", True, ["autoconfig"]), ("off", False, [])])
def test_web_names_per_domain_as_the_features_turn_them_on(mta_sts, autoconfig, prefixes):
    spec = make_spec(mta_sts=mta_sts, autoconfig=autoconfig)
    assert web.web_names(spec) == [f"{p}.{d}" for d in ("example.org", "example.net") for p in prefixes]
    assert spec.features.web is bool(prefixes)
    assert (443 in spec.mail_tcp_ports) is bool(prefixes)
    assert (443 in {s.port for s in services_on(spec.features)}) is bool(prefixes)
    assert ("nginx" in all_packages(spec)) is bool(prefixes)
    certificates = web.web_certificates(spec)
    assert certificates == ({"mail.example.org-web-1": web.web_names(spec)} if prefixes else {})


def test_60_domains_take_two_certificates_of_at_most_100_names():
    domains = [f"d{i:02}.example" for i in range(60)]
    spec = make_spec(domains=domains)
    certificates = web.web_certificates(spec)
    assert list(certificates) == ["mail.example.org-web-1", "mail.example.org-web-2"]
    assert [len(names) for names in certificates.values()] == [100, 20]
    everything = [name for names in certificates.values() for name in names]
    assert everything == web.web_names(spec) and len(set(everything)) == 120
    assert everything[:2] == ["mta-sts.d00.example", "autoconfig.d00.example"]
    assert everything[-1] == "autoconfig.d59.example"
    # 50 domains fit one certificate exactly; one more needs a second.
    assert [len(n) for n in web.web_certificates(make_spec(domains=domains[:50])).values()] == [100]
    assert [len(n) for n in web.web_certificates(make_spec(domains=domains[:51])).values()] == [100, 2]
    # With one of the two features, 60 domains fit one.
    assert [len(n) for n in web.web_certificates(make_spec(domains=domains, autoconfig=False)).values()] == [60]


# -- the autoconfig file -----------------------------------------------------------------------------------
def servers(root: ElementTree.Element) -> dict[str, dict[str, str | None]]:
    return {s.get("type"): {field: s.findtext(field) for field in ("hostname", "port", "socketType", "username",
                                                                   "authentication")}
            for s in root.iter() if s.tag in ("incomingServer", "outgoingServer")}


def test_the_autoconfig_file_names_imaps_and_submissions_for_every_domain():
    spec = make_spec()
    text = web.autoconfig(spec)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ElementTree.fromstring(text.encode())
    assert (root.tag, root.get("version")) == ("clientConfig", "1.1")
    [provider] = root.findall("emailProvider")
    assert provider.get("id") == "mail.example.org"
    assert [d.text for d in provider.findall("domain")] == ["example.org", "example.net"]
    assert provider.findtext("displayName") == "mail.example.org"
    login = {"username": "%EMAILADDRESS%", "authentication": "password-cleartext", "hostname": "mail.example.org",
             "socketType": "SSL"}
    assert servers(root) == {"imap": {**login, "port": "993"}, "smtp": {**login, "port": "465"}}


def test_unusual_but_valid_domain_names_come_out_as_they_are():
    domains = ["xn--bcher-kva.example", "amp.lt.gt.example", "0-0.example", "Quot.APOS.example."]
    spec = make_spec(domains=domains)
    provider = ElementTree.fromstring(web.autoconfig(spec)).find("emailProvider")
    assert [d.text for d in provider.findall("domain")] == spec.domain_names == [
        "xn--bcher-kva.example", "amp.lt.gt.example", "0-0.example", "quot.apos.example"]


def test_markup_in_names_is_escaped_not_interpreted():
    """Validation keeps markup out of domain names; should anything slip through, the file stays well-formed
    XML that says exactly the names it was given (no element, entity or comment of theirs)."""
    hostile = ["a&b.example", "</domain><incomingServer type='pop3'/>.example", "<!--.example", "x]]>y.example"]
    spec = SimpleNamespace(hostname="mail&<co>.example", domain_names=hostile)
    root = ElementTree.fromstring(web.autoconfig(spec))
    provider = root.find("emailProvider")
    assert [d.text for d in provider.findall("domain")] == hostile
    assert provider.get("id") == provider.findtext("displayName") == "mail&<co>.example"
    assert sorted(servers(root)) == ["imap", "smtp"]


# -- SRV (RFC 6186, RFC 8314) ------------------------------------------------------------------------------
@pytest.mark.parametrize("pop3", [False, True])
def test_srv_values_prefer_implicit_tls_and_null_what_is_not_offered(pop3):
    srv = web.srv_records(make_spec(pop3=pop3))
    assert srv == {"_submissions._tcp": "0 1 465 mail.example.org.", "_submission._tcp": "10 1 587 mail.example.org.",
                   "_imaps._tcp": "0 1 993 mail.example.org.", "_imap._tcp": "10 1 143 mail.example.org.",
                   "_pop3s._tcp": "0 1 995 mail.example.org." if pop3 else "0 0 0 .",
                   "_pop3._tcp": "0 0 0 ."}  # POP3 is only ever offered over implicit TLS
    for value in srv.values():
        rdata("SRV", value)  # each is valid SRV data


# -- the record sets each flag brings ----------------------------------------------------------------------
FACTS = HostFacts(("192.0.2.10", "2001:db8::10"), {}, {})


def web_sets(spec) -> dict[tuple[str, str], list[str]]:
    """The MTA-STS and autoconfig record sets wanted, as (name, type) -> values (TXT joined)."""
    labels = ("mta-sts.", "_mta-sts.", "autoconfig.", "_submission", "_imap", "_pop3")
    return {(d.name, d.rdtype): sorted(txt_value(v) if d.rdtype == "TXT" else v.to_text() for v in d.rdatas)
            for d in desired_records(spec, FACTS) if d.name.startswith(labels)}


def mta_sts_sets(domain: str, mode: str = "enforce") -> dict[tuple[str, str], list[str]]:
    policy = f"version: STSv1\r\nmode: {mode}\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
    return {(f"mta-sts.{domain}", "CNAME"): ["mail.example.org."],
            (f"_mta-sts.{domain}", "TXT"): [f"v=STSv1; id={hashlib.sha256(policy.encode()).hexdigest()[:20]}"]}


def autoconfig_sets(domain: str, pop3: bool = False) -> dict[tuple[str, str], list[str]]:
    return {(f"autoconfig.{domain}", "CNAME"): ["mail.example.org."],
            (f"_submissions._tcp.{domain}", "SRV"): ["0 1 465 mail.example.org."],
            (f"_submission._tcp.{domain}", "SRV"): ["10 1 587 mail.example.org."],
            (f"_imaps._tcp.{domain}", "SRV"): ["0 1 993 mail.example.org."],
            (f"_imap._tcp.{domain}", "SRV"): ["10 1 143 mail.example.org."],
            (f"_pop3s._tcp.{domain}", "SRV"): ["0 1 995 mail.example.org." if pop3 else "0 0 0 ."],
            (f"_pop3._tcp.{domain}", "SRV"): ["0 0 0 ."]}


DOMAINS = ("example.org", "example.net")


@pytest.mark.parametrize("features, expected", [
    ({}, lambda d: {**mta_sts_sets(d), **autoconfig_sets(d)}),
    ({"mta_sts": "testing"}, lambda d: {**mta_sts_sets(d, "testing"), **autoconfig_sets(d)}),
    ({"pop3": True}, lambda d: {**mta_sts_sets(d), **autoconfig_sets(d, pop3=True)}),
    ({"mta_sts": "off"}, autoconfig_sets),
    ({"autoconfig": False}, mta_sts_sets),
    ({"mta_sts": "off", "autoconfig": False}, lambda d: {}),
], ids=["default", "testing", "pop3", "no mta-sts", "no autoconfig", "neither"])
def test_the_record_sets_each_feature_brings(features, expected):
    spec = make_spec(**features)
    assert web_sets(spec) == {key: values for d in DOMAINS for key, values in expected(d).items()}
    wanted = {(d.name, d.rdtype): d for d in desired_records(spec, FACTS)}
    for (name, rdtype) in web_sets(spec):
        assert wanted[name, rdtype].ttl == 3600 and wanted[name, rdtype].rdatas is not None  # never pending


def test_the_records_point_at_the_host_also_outside_our_zones():
    spec = parse_spec({"hostname": "mx.hosting.example", "domains": [{"name": "example.org"}],
                       "mailboxes": [{"address": "alice@example.org", "password_hash": HASH}],
                       "dns": {"zones": ["example.org"]}})
    got = web_sets(spec)
    assert got["mta-sts.example.org", "CNAME"] == got["autoconfig.example.org", "CNAME"] == ["mx.hosting.example."]
    assert got["_imaps._tcp.example.org", "SRV"] == ["0 1 993 mx.hosting.example."]
    assert not [name for name, _ in got if "hosting" in name]  # nothing at the host name's side
