"""SPF evaluation (RFC 7208), DMARC records (RFC 7489) and alignment, over DNS answers from a dict."""

from __future__ import annotations

import pytest

from mailhost.verify.checks.dmarc import (
    aligned, check_dmarc, dmarc_alignment, dmarc_problems, organisational_domain, parse_dmarc)
from mailhost.verify.checks.lookup import LookupTimeout, despite_caches
from mailhost.verify.checks.spf import check_spf, evaluate_spf
from mailhost.verify.result import Status

# What the world answers for example.org; each case adds its own records on top.
BASE = {
    ("example.org", "MX"): ["10 mail.example.org."],
    ("mail.example.org", "A"): ["192.0.2.10"],
    ("mail.example.org", "AAAA"): ["2001:db8::10"],
    ("example.org", "A"): ["192.0.2.1"],
}


class Dns:
    """Answers from a dict; remembers the questions (to see macro expansion and lookup counts)."""

    def __init__(self, records: dict, slow: tuple = ()):
        self.records = {**BASE, **records}
        self.slow = slow
        self.asked: list[tuple[str, str]] = []

    def __call__(self, name: str, rdtype: str) -> list[str]:
        self.asked.append((name, rdtype))
        if (name, rdtype) in self.slow:
            raise LookupTimeout(name)
        return list(self.records.get((name, rdtype), []))


def spf(record: str | list[str], **more) -> Dns:
    """The DNS with `record` as the TXT of example.org (plus `more`, keyed "name rdtype")."""
    txt = [record] if isinstance(record, str) else record
    return Dns({("example.org", "TXT"): txt, **{tuple(k.split()): v for k, v in more.items()}})


def many(prefix: str, count: int) -> dict:
    """`count` hosts <prefix>N.example.org, each with an A record that matches nobody we test with."""
    return {f"{prefix}{i}.example.org A": ["198.51.100.200"] for i in range(1, count + 1)}


def terms(prefix: str, count: int, mechanism: str = "a") -> str:
    return " ".join(f"{mechanism}:{prefix}{i}.example.org" for i in range(1, count + 1))


SPF_CASES = [
    # (id, dns, ip, result, lookups)
    ("mx", spf("v=spf1 mx -all"), "192.0.2.10", "pass", 1),
    ("a with the domain's own address", spf("v=spf1 a -all"), "192.0.2.1", "pass", 1),
    ("a/24", spf("v=spf1 a/24 -all"), "192.0.2.200", "pass", 1),
    ("a:other/24 misses", spf("v=spf1 a:mail.example.org/24 -all"), "192.0.3.10", "fail", 1),
    ("ip4 CIDR", spf("v=spf1 ip4:198.51.100.0/24 -all"), "198.51.100.77", "pass", 0),
    ("ip4 CIDR misses", spf("v=spf1 ip4:198.51.100.0/24 -all"), "198.51.101.1", "fail", 0),
    ("ip4 host", spf("v=spf1 ip4:198.51.100.7 -all"), "198.51.100.7", "pass", 0),
    ("include chain", spf("v=spf1 include:_spf.example.net -all",
                          **{"_spf.example.net TXT": ["v=spf1 include:_spf2.example.net ~all"],
                             "_spf2.example.net TXT": ["v=spf1 ip4:203.0.113.5 -all"]}), "203.0.113.5", "pass", 2),
    ("include chain: softfail inside is no match", spf(
        "v=spf1 include:_spf.example.net -all",
        **{"_spf.example.net TXT": ["v=spf1 include:_spf2.example.net ~all"],
           "_spf2.example.net TXT": ["v=spf1 ip4:203.0.113.5 -all"]}), "203.0.113.6", "fail", 2),
    ("include without a record", spf("v=spf1 include:nothing.example.net -all"), "192.0.2.10", "permerror", 1),
    ("fail -all", spf("v=spf1 mx -all"), "203.0.113.99", "fail", 1),
    ("softfail ~all", spf("v=spf1 mx ~all"), "203.0.113.99", "softfail", 1),
    ("neutral ?all", spf("v=spf1 mx ?all"), "203.0.113.99", "neutral", 1),
    ("no all: neutral", spf("v=spf1 mx"), "203.0.113.99", "neutral", 1),
    ("qualifier on a match", spf("v=spf1 -mx +all"), "192.0.2.10", "fail", 1),
    ("redirect", spf("v=spf1 redirect=_spf.example.net",
                     **{"_spf.example.net TXT": ["v=spf1 ip4:192.0.2.10 -all"]}), "192.0.2.10", "pass", 1),
    ("redirect: the target's all decides", spf("v=spf1 redirect=_spf.example.net",
                                               **{"_spf.example.net TXT": ["v=spf1 ip4:192.0.2.10 -all"]}),
     "203.0.113.1", "fail", 1),
    ("redirect: mx is the target's", spf("v=spf1 redirect=example.net",
                                         **{"example.net TXT": ["v=spf1 mx -all"],
                                            "example.net MX": ["10 mx.example.net"],
                                            "mx.example.net A": ["203.0.113.25"]}), "203.0.113.25", "pass", 2),
    ("redirect after all is ignored", spf("v=spf1 ?all redirect=_spf.example.net",
                                          **{"_spf.example.net TXT": ["v=spf1 ip4:192.0.2.10 -all"]}),
     "192.0.2.10", "neutral", 0),
    ("redirect without a record", spf("v=spf1 redirect=nothing.example.net"), "192.0.2.10", "permerror", 1),
    ("10 lookups are fine", spf(f"v=spf1 {terms('h', 10)} -all", **many("h", 10)), "192.0.2.10", "fail", 10),
    ("11 lookups: permerror", spf(f"v=spf1 {terms('h', 11)} -all", **many("h", 11)), "192.0.2.10", "permerror", 11),
    ("lookups count across includes", spf(
        f"v=spf1 {terms('h', 5)} include:_spf.example.org -all",
        **many("h", 10), **{"_spf.example.org TXT": [f"v=spf1 {terms('h', 5)} ?all"]}),
     "192.0.2.10", "permerror", 11),
    ("a match before the 11th lookup passes", spf(f"v=spf1 mx {terms('h', 11)} -all", **many("h", 11)),
     "192.0.2.10", "pass", 1),
    ("ip4/all cost no lookup", spf(f"v=spf1 {terms('h', 10)} ip4:192.0.2.10 -all", **many("h", 10)),
     "192.0.2.10", "pass", 10),
    ("2 void lookups are fine", spf(f"v=spf1 {terms('void', 2)} -all"), "192.0.2.10", "fail", 2),
    ("3 void lookups: permerror", spf(f"v=spf1 {terms('void', 3)} -all"), "192.0.2.10", "permerror", 3),
    ("void exists lookups", spf(f"v=spf1 {terms('void', 3, 'exists')} -all"), "192.0.2.10", "permerror", 3),
    ("two SPF records", spf(["v=spf1 mx -all", "v=spf1 ip4:192.0.2.10 -all"]), "192.0.2.10", "permerror", 0),
    ("other TXT records are not SPF", spf(["google-site-verification=abc", "v=spf1 mx -all", "v=spf10 x"]),
     "192.0.2.10", "pass", 1),
    ("no record", spf([]), "192.0.2.10", "none", 0),
    ("only other TXT", spf(["v=DKIM1; p=abc"]), "192.0.2.10", "none", 0),
    ("unknown mechanism", spf("v=spf1 mx foo -all"), "192.0.2.10", "permerror", 0),
    ("syntax error after a match", spf("v=spf1 +all ip4:192.0.2.300"), "192.0.2.10", "permerror", 0),
    ("bad CIDR", spf("v=spf1 a/33 -all"), "192.0.2.1", "permerror", 0),
    ("leading zero CIDR", spf("v=spf1 ip4:192.0.2.0/024 -all"), "192.0.2.1", "permerror", 0),
    ("ip6 address in ip4", spf("v=spf1 ip4:2001:db8::1 -all"), "192.0.2.1", "permerror", 0),
    ("include without a domain end", spf("v=spf1 include:localhost -all"), "192.0.2.1", "permerror", 0),
    ("two redirects", spf("v=spf1 redirect=a.example.net redirect=b.example.net"), "192.0.2.1", "permerror", 0),
    ("stray percent", spf("v=spf1 exists:50%.example.net -all"), "192.0.2.1", "permerror", 0),
    ("exp-only macro in a domain", spf("v=spf1 exists:%{c}.example.net -all"), "192.0.2.1", "permerror", 0),
    ("unknown modifier is ignored", spf("v=spf1 mx foo=bar -all"), "192.0.2.10", "pass", 1),
    ("uppercase", spf("V=SPF1 MX -ALL"), "192.0.2.10", "pass", 1),
    ("ip6", spf("v=spf1 ip6:2001:db8:1::/48 -all"), "2001:db8:1::5", "pass", 0),
    ("ip6 misses", spf("v=spf1 ip6:2001:db8:1::/48 -all"), "2001:db8:2::5", "fail", 0),
    ("ip4 never matches IPv6", spf("v=spf1 ip4:0.0.0.0/0 -all"), "2001:db8::10", "fail", 0),
    ("mx over IPv6", spf("v=spf1 mx -all"), "2001:db8::10", "pass", 1),
    ("mx//64", spf("v=spf1 mx//64 -all"), "2001:db8::ffff", "pass", 1),
    ("mx without //64 misses", spf("v=spf1 mx -all"), "2001:db8::ffff", "fail", 1),
    ("dual CIDR picks by version", spf("v=spf1 a:mail.example.org/32//64 -all"), "2001:db8::1:2", "pass", 1),
    ("IPv4-mapped IPv6 is IPv4", spf("v=spf1 mx -all"), "::ffff:192.0.2.10", "pass", 1),
    ("more than 10 MX hosts", spf("v=spf1 mx -all", **{"example.org MX": [f"10 mx{i}.example.org" for i in range(11)]}),
     "192.0.2.10", "permerror", 1),
    ("null MX", spf("v=spf1 mx -all", **{"example.org MX": ["0 ."]}), "192.0.2.10", "fail", 1),
    ("exists %{d}", spf("v=spf1 exists:%{d}.allow.example.net -all",
                        **{"example.org.allow.example.net A": ["127.0.0.2"]}), "203.0.113.1", "pass", 1),
    ("ptr, forward-confirmed", spf("v=spf1 ptr -all", **{"10.2.0.192.in-addr.arpa PTR": ["mail.example.org."]}),
     "192.0.2.10", "pass", 1),
    ("ptr, other domain", spf("v=spf1 ptr -all", **{"10.2.0.192.in-addr.arpa PTR": ["mail.example.net."],
                                                     "mail.example.net A": ["192.0.2.10"]}), "192.0.2.10", "fail", 1),
    ("ptr:domain", spf("v=spf1 ptr:example.net -all",
                       **{"10.2.0.192.in-addr.arpa PTR": ["x.example.org", "mx.Example.NET."],
                          "mx.example.net A": ["192.0.2.10"]}), "192.0.2.10", "pass", 1),
    ("ptr, not confirmed", spf("v=spf1 ptr -all", **{"99.2.0.192.in-addr.arpa PTR": ["mail.example.org."]}),
     "192.0.2.99", "fail", 1),
]


@pytest.mark.parametrize("dns, ip, result, lookups", [c[1:] for c in SPF_CASES], ids=[c[0] for c in SPF_CASES])
def test_spf_evaluation(dns, ip, result, lookups):
    outcome = evaluate_spf("example.org", ip, dns)
    assert (outcome.result, outcome.lookups) == (result, lookups), outcome.explanation


def test_spf_outcome_says_why():
    outcome = evaluate_spf("example.org", "192.0.2.10", spf("v=spf1 ip4:203.0.113.0/24 mx -all"))
    assert outcome.record == "v=spf1 ip4:203.0.113.0/24 mx -all"
    assert "'mx' of example.org" in outcome.explanation
    too_many = evaluate_spf("example.org", "192.0.2.10", spf(f"v=spf1 {terms('h', 11)} -all", **many("h", 11)))
    assert "more than 10 DNS lookups" in too_many.explanation
    voids = evaluate_spf("example.org", "192.0.2.10", spf(f"v=spf1 {terms('void', 3)} -all"))
    assert voids.void_lookups == 3 and "found nothing" in voids.explanation
    two = evaluate_spf("example.org", "192.0.2.10", spf(["v=spf1 mx -all", "v=spf1 a -all"]))
    assert "2 SPF records at example.org" in two.explanation
    syntax = evaluate_spf("example.org", "192.0.2.10", spf("v=spf1 mx ip4:1.2.3 -all"))
    assert "syntax error in the SPF record of example.org" in syntax.explanation and "ip4:1.2.3" in syntax.explanation


def test_spf_timeouts_are_temperror_even_inside_an_include():
    slow_txt = spf("v=spf1 mx -all")
    slow_txt.slow = (("example.org", "TXT"),)
    assert evaluate_spf("example.org", "192.0.2.10", slow_txt).result == "temperror"
    nested = spf("v=spf1 include:_spf.example.net -all")
    nested.slow = (("_spf.example.net", "TXT"),)
    outcome = evaluate_spf("example.org", "192.0.2.10", nested)
    assert outcome.result == "temperror" and "_spf.example.net TXT" in outcome.explanation


def test_a_dns_error_in_ptr_is_no_match_not_temperror():
    dns = spf("v=spf1 ptr ip4:192.0.2.10 -all")
    dns.slow = (("10.2.0.192.in-addr.arpa", "PTR"),)
    assert evaluate_spf("example.org", "192.0.2.10", dns).result == "pass"


def test_ptr_is_evaluated_but_reported_as_a_problem():
    outcome = evaluate_spf("example.org", "192.0.2.10",
                           spf("v=spf1 ptr -all", **{"10.2.0.192.in-addr.arpa PTR": ["mail.example.org."]}))
    assert outcome.result == "pass"
    assert outcome.problems == ("the SPF record of example.org uses 'ptr', which RFC 7208 5.5 says not to use",)


# RFC 7208 7.4, with the sender strong-bad@email.example.com and the domain email.example.com.
MACRO_CASES = [
    ("%{s}", "192.0.2.3", "strong-bad@email.example.com"),
    ("%{o}", "192.0.2.3", "email.example.com"),
    ("%{d}", "192.0.2.3", "email.example.com"),
    ("%{d4}", "192.0.2.3", "email.example.com"),
    ("%{d2}", "192.0.2.3", "example.com"),
    ("%{d1}", "192.0.2.3", "com"),
    ("%{dr}", "192.0.2.3", "com.example.email"),
    ("%{d2r}", "192.0.2.3", "example.email"),
    ("%{l}", "192.0.2.3", "strong-bad"),
    ("%{l-}", "192.0.2.3", "strong.bad"),
    ("%{lr-}", "192.0.2.3", "bad.strong"),
    ("%{l1r-}", "192.0.2.3", "strong"),
    ("%{h}", "192.0.2.3", "helo.example.net"),
    ("%{ir}.%{v}._spf.%{d2}", "192.0.2.3", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "192.0.2.3", "bad.strong.lp._spf.example.com"),
    ("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01",
     "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"),
    ("%{i}.%%%-%_.example.net", "192.0.2.3", "192.0.2.3.%%20 .example.net"),
    ("%{S}.example.net", "192.0.2.3", "strong-bad%40email.example.com.example.net"),
]


@pytest.mark.parametrize("spec, ip, name", MACRO_CASES)
def test_spf_macros_expand_as_rfc_7208_shows(spec, ip, name):
    dns = Dns({("email.example.com", "TXT"): [f"v=spf1 exists:{spec} -all"]})
    outcome = evaluate_spf("email.example.com", ip, dns, sender="strong-bad@email.example.com",
                           helo="helo.example.net")
    assert outcome.result == "fail", outcome.explanation
    assert dns.asked[-1] == (name, "A")


def test_spf_without_a_sender_is_postmaster_at_the_domain():
    dns = spf("v=spf1 exists:%{l}.%{o}.example.net -all")
    evaluate_spf("example.org", "192.0.2.3", dns)
    assert dns.asked[-1] == ("postmaster.example.org.example.net", "A")


# --- check_spf -------------------------------------------------------------------------------------------------

def statuses(results):
    return [r.status for r in results]


def test_check_spf_all_host_addresses_authorised():
    results = check_spf("example.org", ["192.0.2.10", "2001:db8::10"], spf("v=spf1 mx -all"))
    assert statuses(results) == [Status.OK] * 3
    assert {r.check for r in results} == {"dns.spf"} and {r.subject for r in results} == {"example.org"}
    assert "1 of 10 DNS lookups, other servers get fail" in results[0].message
    assert results[1].message.startswith("192.0.2.10 may send as example.org")


def test_check_spf_host_address_not_authorised_says_how_to_fix_it():
    results = check_spf("example.org", ["192.0.2.10", "198.51.100.9", "2001:db8:5::9"], spf("v=spf1 mx -all"))
    assert statuses(results) == [Status.OK, Status.OK, Status.ERROR, Status.ERROR]
    v4, v6 = results[2:]
    assert "198.51.100.9 may not send as example.org: SPF fail" in v4.message
    assert v4.fix == "add `mx` or `ip4:198.51.100.9` to the SPF record of example.org"
    assert v6.fix == "add `mx` or `ip6:2001:db8:5::9` to the SPF record of example.org"


@pytest.mark.parametrize("dns, status, words", [
    (spf([]), Status.ERROR, "no SPF record at example.org"),
    (spf("v=spf1 mx -all -all bogus"), Status.ERROR, "SPF permerror: syntax error"),
    (spf(f"v=spf1 {terms('h', 11)} mx -all", **many("h", 11)), Status.ERROR, "more than 10 DNS lookups"),
    (spf("v=spf1 mx +all"), Status.ERROR, "lets any server send as example.org"),
    (spf("v=spf1 mx -all"), Status.OK, "SPF record valid"),
], ids=["none", "syntax", "lookups", "+all", "fine"])
def test_check_spf_judges_the_record_first(dns, status, words):
    results = check_spf("example.org", ["192.0.2.10"], dns)
    assert results[0].status is status and words in results[0].message
    if status is Status.ERROR and "any server" not in words:
        assert len(results) == 1, "a broken record is one error, not one per address"
        assert results[0].fix


def test_check_spf_lookup_limit_fix_is_to_flatten():
    (result,) = check_spf("example.org", ["192.0.2.10"], spf(f"v=spf1 {terms('h', 11)} mx -all", **many("h", 11)))
    assert "ip4:/ip6:" in result.fix


def test_check_spf_warns_close_to_the_limit_and_on_neutral_and_ptr():
    near = check_spf("example.org", ["192.0.2.10"], spf(f"v=spf1 mx {terms('h', 8)} -all", **many("h", 8)))
    assert statuses(near) == [Status.OK, Status.WARN, Status.OK]
    assert "needs 9 of at most 10 DNS lookups" in near[1].message
    neutral = check_spf("example.org", ["192.0.2.10"], spf("v=spf1 mx ?all"))
    assert statuses(neutral) == [Status.OK, Status.WARN, Status.OK] and "-all" in neutral[1].fix
    ptr = check_spf("example.org", ["192.0.2.10"],
                    spf("v=spf1 ptr -all", **{"10.2.0.192.in-addr.arpa PTR": ["mail.example.org"]}))
    assert statuses(ptr) == [Status.OK, Status.WARN, Status.OK] and "'ptr'" in ptr[1].message


def test_an_error_only_a_cache_still_serves_is_a_warning():
    """The deploy just republished SPF; the resolver still holds the old record for its TTL."""
    cached, published = spf("v=spf1 -all"), spf("v=spf1 mx -all")
    results = despite_caches(lambda lookup: check_spf("example.org", ["192.0.2.10"], lookup), cached, published)
    assert statuses(results) == [Status.OK, Status.WARN]
    assert "192.0.2.10 may not send as example.org: SPF fail" in results[1].message
    assert "cached before they were published" in results[1].message and "TTL" in results[1].fix
    dmarc = despite_caches(lambda lookup: check_dmarc("example.org", lookup, ["example.org"]),
                           Dns({}), Dns({("_dmarc.example.org", "TXT"): ["v=DMARC1; p=reject"]}))
    assert Status.ERROR not in statuses(dmarc) and Status.WARN in statuses(dmarc)


def test_an_error_the_published_records_share_stays_an_error():
    wrong = spf("v=spf1 -all")
    for fresh in (spf("v=spf1 -all"), None):
        results = despite_caches(lambda lookup: check_spf("example.org", ["192.0.2.10"], lookup), wrong, fresh)
        assert statuses(results) == [Status.OK, Status.ERROR] and "cached" not in results[1].message
    # Only the checks the published records clear are softened; a timeout is never one of them.
    slow = spf("v=spf1 mx -all")
    slow.slow = (("mail.example.org", "A"),)
    assert statuses(despite_caches(lambda lookup: check_spf("example.org", ["192.0.2.10"], lookup), slow,
                                   spf("v=spf1 mx -all"))) == [Status.TIMEOUT]


def test_published_records_are_asked_only_when_the_cache_gives_an_error():
    fine, fresh = spf("v=spf1 mx -all"), spf("v=spf1 mx -all")
    despite_caches(lambda lookup: check_spf("example.org", ["192.0.2.10"], lookup), fine, fresh)
    assert fine.asked and not fresh.asked


def test_check_spf_timeout_is_a_timeout():
    dns = spf("v=spf1 mx -all")
    dns.slow = (("mail.example.org", "A"),)
    results = check_spf("example.org", ["192.0.2.10"], dns)
    assert statuses(results) == [Status.TIMEOUT]
    assert results[0].message == "no answer in time: mail.example.org A (SPF of example.org)"


# --- DMARC -------------------------------------------------------------------------------------------------------

def dmarc(*records: str, **more) -> Dns:
    return Dns({("_dmarc.example.org", "TXT"): list(records), **{tuple(k.split()): v for k, v in more.items()}})


OURS = ["example.org", "example.net"]
AUTH = "example.org._report._dmarc.example.net TXT"


@pytest.mark.parametrize("dns, expected", [
    (dmarc("v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"), [Status.OK, Status.OK]),
    (dmarc("v=DMARC1;p=reject;sp=quarantine;adkim=s;aspf=r;pct=100;fo=1:d;ri=86400;rf=afrf;"
           "rua=mailto:a@example.org!10m,mailto:b@mail.example.org;ruf=mailto:f@example.org;"),
     [Status.OK, Status.OK]),
    (dmarc("v = DMARC1 ; P = Reject ; rua = MAILTO:postmaster@example.org "), [Status.OK, Status.OK]),
    (dmarc("v=DMARC1; p=none; rua=mailto:postmaster@example.org"), [Status.WARN, Status.OK]),
    (dmarc("v=DMARC1; p=reject"), [Status.OK, Status.WARN]),
    (dmarc(), [Status.ERROR]),
    (dmarc("some-verification=1"), [Status.ERROR]),
    (dmarc("v=dmarc1; p=reject"), [Status.ERROR]),
    (dmarc("p=reject; v=DMARC1"), [Status.ERROR]),
    (dmarc("v=DMARC1; p=reject", "v=DMARC1; p=none"), [Status.ERROR]),
    (dmarc("v=DMARC1; p=reject", "some-verification=1"), [Status.OK, Status.WARN]),
    (dmarc("v=DMARC1; p=reject; rau=mailto:x@example.org"), [Status.OK, Status.WARN, Status.WARN]),
    (dmarc("v=DMARC1; p=reject; rua=mailto:dmarc@reports.example.org"), [Status.OK, Status.OK]),
    (dmarc("v=DMARC1; p=reject; rua=mailto:dmarc@example.net"), [Status.OK, Status.OK, Status.ERROR]),
    (dmarc("v=DMARC1; p=reject; rua=mailto:dmarc@example.net",
           **{AUTH: ["v=DMARC1"]}), [Status.OK, Status.OK, Status.OK]),
    (dmarc("v=DMARC1; p=reject; rua=mailto:postmaster@example.org; ruf=mailto:dmarc@example.net"),
     [Status.OK, Status.OK, Status.ERROR]),
], ids=["quarantine", "every tag", "spacing and case", "p=none", "no rua", "missing", "not DMARC", "lowercase version",
        "v not first", "two", "other TXT", "unknown tag", "subdomain rua", "external rua unauthorised",
        "external rua authorised", "external ruf"])
def test_dmarc_records(dns, expected):
    assert statuses(check_dmarc("example.org", dns, OURS)) == expected


@pytest.mark.parametrize("record, problem", [
    ("v=DMARC1; p=block", "p=block (must be none, quarantine or reject)"),
    ("v=DMARC1; rua=mailto:a@example.org", "no p= (policy) tag"),
    ("v=DMARC1; p=reject; sp=maybe", "sp=maybe"),
    ("v=DMARC1; p=reject; pct=101", "pct=101 (must be a number from 0 to 100)"),
    ("v=DMARC1; p=reject; pct=-1", "pct=-1"),
    ("v=DMARC1; p=reject; adkim=x", "adkim=x (must be r or s)"),
    ("v=DMARC1; p=reject; aspf=relaxed", "aspf=relaxed"),
    ("v=DMARC1; p=reject; rua=https://example.org/dmarc", "rua=https://example.org/dmarc"),
    ("v=DMARC1; p=reject; rua=postmaster@example.org", "rua=postmaster@example.org"),
    ("v=DMARC1; p=reject; ruf=mailto:", "ruf=mailto:"),
    ("v=DMARC1; p=reject; fo=2", "fo=2"),
    ("v=DMARC1; p=reject; ri=hourly", "ri=hourly"),
    ("v=DMARC1; p", "'p' is not tag=value"),
    ("v=DMARC1; p=reject; p=none", "'p' appears twice"),
])
def test_dmarc_bad_values_are_errors_that_name_them(record, problem):
    (result,) = check_dmarc("example.org", dmarc(record), OURS)
    assert result.status is Status.ERROR
    assert result.message.startswith("invalid DMARC record at _dmarc.example.org: ") and problem in result.message
    assert "_dmarc.example.org" in result.fix


def test_dmarc_missing_fix_is_a_record_to_publish():
    (result,) = check_dmarc("example.org", dmarc(), OURS)
    assert result.message == "no DMARC record at _dmarc.example.org: receivers apply no policy"
    assert result.fix == 'publish TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org" at _dmarc.example.org'


def test_dmarc_external_destination_fix_depends_on_whose_domain_it_is():
    record = "v=DMARC1; p=reject; rua=mailto:dmarc@example.net"
    ours = check_dmarc("example.org", dmarc(record), OURS)[-1]
    assert "example.net has not agreed" in ours.message and "example.org._report._dmarc.example.net" in ours.message
    assert "`mailhost dns apply`" in ours.fix
    theirs = check_dmarc("example.org", dmarc(record), ["example.org"])[-1]
    assert theirs.fix.startswith("ask whoever runs example.net to publish TXT \"v=DMARC1\" at "
                                 "example.org._report._dmarc.example.net")


def test_dmarc_expected_policy():
    record = dmarc("v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org")
    assert statuses(check_dmarc("example.org", record, OURS, expected_policy="quarantine")) == [Status.OK] * 2
    result = check_dmarc("example.org", record, OURS, expected_policy="reject")[0]
    assert result.status is Status.WARN and result.message == "DMARC policy is p=quarantine, the spec says p=reject"


def test_dmarc_timeouts():
    slow = dmarc()
    slow.slow = (("_dmarc.example.org", "TXT"),)
    assert statuses(check_dmarc("example.org", slow, OURS)) == [Status.TIMEOUT]
    auth = dmarc("v=DMARC1; p=reject; rua=mailto:d@example.net")
    auth.slow = (("example.org._report._dmarc.example.net", "TXT"),)
    assert statuses(check_dmarc("example.org", auth, OURS)) == [Status.OK, Status.OK, Status.TIMEOUT]


def test_parse_dmarc():
    assert parse_dmarc("v=DMARC1; P=reject; rua=mailto:a@example.org, mailto:b@example.net;") == {
        "v": "DMARC1", "p": "reject", "rua": "mailto:a@example.org, mailto:b@example.net"}
    assert dmarc_problems(parse_dmarc("v=DMARC1; p=reject; rua=mailto:a@example.org, mailto:b@example.net")) == []
    with pytest.raises(ValueError):
        parse_dmarc("p=reject")


# --- alignment ---------------------------------------------------------------------------------------------------

RELAXED = "v=DMARC1; p=reject"


@pytest.mark.parametrize("header_from, spf_domain, spf_result, dkim, record, expected", [
    ("example.org", "example.org", "pass", [], RELAXED, "pass"),
    ("example.org", "bounce.example.org", "pass", [], RELAXED, "pass"),
    ("example.org", "bounce.example.org", "pass", [], "v=DMARC1; p=reject; aspf=s", "fail"),
    ("example.org", "example.org", "pass", [], "v=DMARC1; p=reject; aspf=s", "pass"),
    ("example.org", "example.org", "softfail", [], RELAXED, "fail"),
    ("example.org", "example.net", "pass", [], RELAXED, "fail"),
    ("example.org", "example.net", "pass", ["example.org"], RELAXED, "pass"),
    ("example.org", "example.net", "fail", ["example.net", "mail.example.org"], RELAXED, "pass"),
    ("example.org", "example.net", "fail", ["mail.example.org"], "v=DMARC1; p=reject; adkim=s", "fail"),
    ("news.example.org", "example.net", "fail", ["example.org"], RELAXED, "pass"),
    ("Example.ORG.", "example.org", "pass", [], "v=DMARC1; p=reject; aspf=S", "pass"),
    ("example.org", "example.net", "fail", [], RELAXED, "fail"),
])
def test_dmarc_alignment(header_from, spf_domain, spf_result, dkim, record, expected):
    assert dmarc_alignment(header_from, spf_domain, spf_result, dkim, record) == expected
    assert dmarc_alignment(header_from, spf_domain, spf_result, dkim, parse_dmarc(record)) == expected


def test_organisational_domain_comes_from_the_public_suffix_list():
    assert organisational_domain("mail.example.org.") == "example.org"
    assert organisational_domain("example.org") == "example.org"
    assert organisational_domain("a.b.example.co.uk") == "example.co.uk"  # not co.uk: two owners stay two
    assert organisational_domain("co.uk") == "co.uk"  # a public suffix is its own
    assert organisational_domain("mail.d0-abc.test") == "d0-abc.test"  # a TLD the list does not name


def test_relaxed_alignment_under_a_multi_label_suffix_is_per_owner():
    assert aligned("mail.example.co.uk", "example.co.uk", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")
    assert not aligned("mail.example.co.uk", "example.co.uk", "s")
