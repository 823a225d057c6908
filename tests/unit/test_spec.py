"""Spec validation: good specs load with defaults; each bad spec names its field path and what is wrong."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mailhost.spec import SpecError, json_schema, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86

MINIMAL = {
    "hostname": "mail.example.org",
    "domains": [{"name": "example.org"}],
    "mailboxes": [{"address": "alice@example.org", "password_hash": HASH}],
}


def with_(**changes):
    spec = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = spec
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        if value is DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return spec


DELETE = object()


def test_minimal_spec_gets_sensible_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.hostname == "mail.example.org"
    assert spec.limits.message_size == 25 * 1024 * 1024
    assert spec.dkim.selectors == ["mail"] and spec.selectors(spec.domains[0]) == ["mail"]
    assert spec.tls.acme_directory.startswith("https://acme-v02.api.letsencrypt.org")
    assert spec.acme_contact == "postmaster@example.org"
    assert spec.features.clamav is False and spec.features.postscreen is True
    assert spec.firewall.ssh_port == 22 and spec.fail2ban.enabled
    assert spec.addresses.ipv4 is None  # discovered on the host


def test_example_spec_is_valid(tmp_path, monkeypatch):
    shutil.copy(REPO / "specs/example.yaml", tmp_path / "spec.yaml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/carol.pw").write_text("correct horse\n")
    monkeypatch.setenv("MAILHOST_PW_BOB", "battery staple")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "not-a-real-token")
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.domain_names == ["example.org", "lists.example.org", "example.net"]
    assert spec.dns_zones == ["example.org", "example.net"]
    assert [spec.dmarc_of(d).policy for d in spec.domains] == ["reject", "quarantine", "quarantine"]
    assert spec.selectors(spec.domains[2]) == ["mail2026"] and spec.ed25519_selectors(spec.domains[2]) == []
    assert spec.dkim_keys(spec.domains[0]) == [("mail", "rsa"), ("ed25519", "ed25519")]
    assert spec.aliases[1].source == "@example.net"
    assert spec.mailboxes[0].quota == 5 * 1024 ** 3
    assert spec.fail2ban.bantime == 3600 and spec.fail2ban.findtime == 600
    assert spec.dns.provider.kind == "cloudflare" and spec.dns.ttl == 3600 and spec.dns_owner == "mail-example-org"


def test_names_are_normalised():
    spec = parse_spec(with_(hostname="Mail.Example.ORG.", domains=[{"name": "Example.org"}],
                            mailboxes=[{"address": "Alice@EXAMPLE.org", "password_hash": HASH}]))
    assert spec.hostname == "mail.example.org"
    assert spec.mailboxes[0].address == "alice@example.org"


BAD = [
    ("missing hostname", with_(hostname=DELETE), "hostname", "is required"),
    ("hostname not a name", with_(hostname="mail_server"), "hostname", "not a valid fully qualified host name"),
    ("hostname is an IP", with_(hostname="192.0.2.1"), "hostname", "not a valid fully qualified host name"),
    ("domain with a space", with_(domains=[{"name": "example.org"}, {"name": "exa mple.org"}]),
     "domains[1].name", "'exa mple.org' is not a valid domain name"),
    ("domains not a list", with_(domains="example.org"), "domains", "expected a list"),
    ("no domains", with_(domains=[]), "domains", "at least one domain"),
    ("duplicate domain", with_(domains=[{"name": "example.org"}, {"name": "EXAMPLE.org"}]),
     "domains[1].name", "listed twice"),
    ("unknown top-level key", with_(hostnme="x"), "hostnme", "unknown field (did you mean 'hostname'?)"),
    ("unknown nested key", with_(limits__mesage_size="10M"), "limits.mesage_size", "did you mean 'message_size'"),
    ("unknown key in a list item", with_(mailboxes__0__pasword_hash="x"), "mailboxes[0].pasword_hash",
     "unknown field"),
    ("bad mailbox address", with_(mailboxes__0__address="alice.example.org"), "mailboxes[0].address",
     "not a valid email address"),
    ("mailbox outside the domains", with_(mailboxes__0__address="alice@example.com"), "mailboxes[0].address",
     "not in one of the mail domains"),
    ("no password source", with_(mailboxes__0__password_hash=DELETE), "mailboxes[0]", "exactly one of"),
    ("two password sources", with_(mailboxes__0__password_env="PW"), "mailboxes[0]", "has password_hash, password_env"),
    ("plaintext as hash", with_(mailboxes__0__password_hash="hunter2"), "mailboxes[0].password_hash",
     "is not a password hash"),
    ("weak hash scheme", with_(mailboxes__0__password_hash="{PLAIN}hunter2"), "mailboxes[0].password_hash",
     "too weak"),
    ("unset password env", with_(mailboxes__0__password_hash=DELETE, mailboxes__0__password_env="MAILHOST_NOPE_XYZ"),
     "mailboxes[0].password_env", "MAILHOST_NOPE_XYZ is not set"),
    ("missing password file", with_(mailboxes__0__password_hash=DELETE, mailboxes__0__password_file="nope.pw"),
     "mailboxes[0].password_file", "not a readable file"),
    ("bad quota", with_(mailboxes__0__quota="lots"), "mailboxes[0].quota", "is not a size"),
    ("duplicate mailbox", with_(mailboxes=[{"address": "a@example.org", "password_hash": HASH}] * 2),
     "mailboxes[1].address", "listed twice"),
    ("alias outside domains", with_(aliases=[{"source": "x@example.com", "destinations": ["alice@example.org"]}]),
     "aliases[0].source", "not in one of the mail domains"),
    ("alias without destinations", with_(aliases=[{"source": "x@example.org", "destinations": []}]),
     "aliases[0].destinations", "at least one destination"),
    ("alias destination not an address", with_(aliases=[{"source": "@example.org", "destinations": ["bob"]}]),
     "aliases[0].destinations[0]", "not a valid email address"),
    ("alias shadows a mailbox", with_(aliases=[{"source": "alice@example.org", "destinations": ["b@x.org"]}]),
     "aliases[0].source", "also a mailbox"),
    ("message size zero", with_(limits__message_size=0), "limits.message_size", "is not a size"),
    ("ACME over http", with_(tls__acme_directory="http://acme.example/dir"), "tls.acme_directory",
     "not an https:// URL"),
    ("challenge is not a setting", with_(tls__challenge="dns-01"), "tls.challenge", "unknown field"),
    ("bad DKIM selector", with_(dkim__selectors=["mail_2026"]), "dkim.selectors[0]", "not a DNS label"),
    ("odd DKIM key size", with_(dkim__key_bits=1000), "dkim.key_bits", "is not one of 1024, 2048"),
    ("feature not a boolean", with_(features__pop3="yes"), "features.pop3", "expected true or false"),
    ("ClamAV not supported yet", with_(features__clamav=True), "features.clamav", "not supported yet"),
    ("bad DNSBL", with_(features__dnsbl=["not a list"]), "features.dnsbl[0]", "not a valid domain name"),
    ("ssh port out of range", with_(firewall__ssh_port=70000), "firewall.ssh_port", "not a port number"),
    ("bad firewall source", with_(firewall__allow=[{"port": 8080, "sources": ["10.0.0.300"]}]),
     "firewall.allow[0].sources[0]", "not an address or network"),
    ("firewall reopens a mail port", with_(firewall__allow=[{"port": 25}]), "firewall.allow[0].port",
     "opened by mailhost already"),
    ("bad bantime", with_(fail2ban__bantime="forever"), "fail2ban.bantime", "not a duration"),
    ("bad IPv4", with_(addresses__ipv4="2001:db8::1"), "addresses.ipv4", "not an IPv4 address"),
    ("section not a mapping", with_(tls=["x"]), "tls", "expected a mapping"),
    # DNS: each caught before any connection or API call.
    ("unknown DNS provider", with_(dns__provider={"kind": "godaddy"}), "dns.provider.kind",
     "'godaddy' is not one of 'cloudflare', 'route53', 'rfc2136'"),
    ("rfc2136 without a server", with_(dns__provider={"kind": "rfc2136"}), "dns.provider.server", "is required"),
    ("option of another provider", with_(dns__provider={"kind": "route53", "server": "ns1.example.org"}),
     "dns.provider.server", "applies to rfc2136, not route53"),
    ("a provider's kind as a key", with_(dns__provider={"kind": "route53", "route53": True}),
     "dns.provider.route53", "unknown field"),
    ("provider not a mapping", with_(dns__provider="route53"), "dns.provider", "expected a mapping, got str"),
    ("missing Cloudflare token", with_(dns__provider={"kind": "cloudflare", "api_token_env": "MAILHOST_NO_TOKEN"}),
     "dns.provider.api_token_env", "MAILHOST_NO_TOKEN is not set"),
    ("missing TSIG key file", with_(dns__provider={"kind": "rfc2136", "server": "192.0.2.53",
                                                   "tsig_key_file": "nope.key"}),
     "dns.provider.tsig_key_file", "not a readable file"),
    ("host name outside the zones", with_(hostname="mail.example.net", dns__provider={"kind": "route53"}),
     "hostname", "outside the DNS zones (example.org)"),
    ("domain outside the zones", with_(dns__zones=["example.com"], dns__host_addresses=False,
                                      dns__provider={"kind": "route53"}), "domains[0].name",
     "outside the DNS zones (example.com)"),
    ("adopt outside the zones", with_(dns__adopt=["example.net MX"], dns__provider={"kind": "route53"}),
     "dns.adopt[0]", "outside the DNS zones"),
    ("adopt not NAME TYPE", with_(dns__adopt=["example.org"]), "dns.adopt[0]", "is not 'NAME TYPE'"),
    ("SPF without v=spf1", with_(domains__0__spf="mx -all"), "domains[0].spf", "must start with 'v=spf1'"),
    ("unknown DMARC policy", with_(dns__dmarc__policy="block"), "dns.dmarc.policy", "is not one of 'none'"),
    ("DMARC report address", with_(dns__dmarc__rua=["reports"]), "dns.dmarc.rua[0]", "not a valid email address"),
    ("change threshold over 100", with_(dns__max_change_percent=150), "dns.max_change_percent",
     "is not a percentage"),
    ("API endpoint not a URL", with_(dns__provider={"kind": "route53", "endpoint": "localhost:5000"}),
     "dns.provider.endpoint", "is not an http(s):// URL"),
]

# Values that would split a line in main.cf, a map, the users file or a key table, or reach a shell: each
# refused by the field's own check (not only by the quoting that keeps them out of shells anyway).
HOSTILE = [
    ("line break in the host name", with_(hostname="mail.example\n.org"), "hostname", "not a valid fully qualified"),
    ("trailing line break in a domain", with_(domains__0__name="example.org\n"), "domains[0].name",
     "not a valid domain name"),
    ("line break in a local part", with_(mailboxes__0__address="dave\n@example.org"), "mailboxes[0].address",
     "local part"),
    ("line break in a selector", with_(dkim__selectors=["mail\n"]), "dkim.selectors[0]", "not a DNS label"),
    ("local part starts a comment", with_(mailboxes__0__address="#dave@example.org"), "mailboxes[0].address",
     "not starting with '#'"),
    ("local part over 64 octets", with_(mailboxes__0__address="a" * 300 + "@example.org"), "mailboxes[0].address",
     "at most 64"),
    ("scope id in fail2ban.ignore", with_(fail2ban__ignore=["fe80::1%x\nignorecommand = true"]), "fail2ban.ignore[0]",
     "scope id"),
    ("scope id in ssh_sources", with_(firewall__ssh_sources=["fe80::/64%eth0"]), "firewall.ssh_sources[0]",
     "scope id"),
    ("scope id in the IPv6 address", with_(addresses__ipv6="fe80::1%eth0"), "addresses.ipv6", "scope id"),
    ("colon in a password hash", with_(mailboxes__0__password_hash=HASH + ":userdb_uid=0"),
     "mailboxes[0].password_hash", "is not a password hash"),
    ("command in the ACME directory", with_(tls__acme_directory="https://ca.example/dir\n;reboot"),
     "tls.acme_directory", "not an https:// URL"),
    ("line break in free text", with_(domains__0__spf="v=spf1 mx\n-all"), "domains[0].spf", "holds a line break"),
    ("line break in a server name", with_(dns__provider={"kind": "rfc2136", "server": "ns1\nx"}),
     "dns.provider.server", "line break"),
    ("float key size", with_(dkim__key_bits=2048.0), "dkim.key_bits", "is not one of 1024"),
    ("boolean port-like literal", with_(dkim__key_bits=True), "dkim.key_bits", "is not one of 1024"),
    ("TTL over 2^31-1", with_(dns__ttl=2 ** 31), "dns.ttl", "at most 2147483647"),
    ("negative day count", with_(verify__cert_min_days=-1), "verify.cert_min_days", "whole number from 0"),
    ("maxretry zero", with_(fail2ban__maxretry=0), "fail2ban.maxretry", "whole number from 1"),
    ("selector twice", with_(dkim__selectors=["a", "b", "a"]), "dkim.selectors[2]", "listed twice"),
    ("domain selector twice", with_(domains__0__dkim_selectors=["s", "s"]), "domains[0].dkim_selectors[1]",
     "listed twice"),
    ("alias loop", with_(aliases=[{"source": "x@example.org", "destinations": ["y@example.org"]},
                                  {"source": "y@example.org", "destinations": ["z@example.org"]},
                                  {"source": "z@example.org", "destinations": ["x@example.org"]}]),
     "aliases[0].destinations", "loop: 'x@example.org -> y@example.org -> z@example.org -> x@example.org'"),
]


@pytest.mark.parametrize("label,data,path,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_value_is_refused_by_its_field(label, data, path, message):
    test_bad_spec_is_rejected_with_its_field_path(label, data, path, message)


def test_a_secret_typed_in_the_wrong_field_is_not_echoed(monkeypatch):
    secret = "correct horse battery staple"
    for data in (with_(mailboxes__0__password_hash=DELETE, mailboxes__0__password_env=secret),
                 with_(mailboxes__0__password_hash=secret),
                 with_(dns__provider={"kind": "cloudflare", "api_token_env": secret})):
        with pytest.raises(SpecError) as err:
            parse_spec(data)
        assert "horse" not in str(err.value), err.value


@pytest.mark.parametrize("content,problem", [("", "is empty"), ("\n", "is empty"),
                                             (b"\xff\xfe pw", "not UTF-8"), ("two\nlines", "line break")])
def test_an_unusable_password_file_is_refused_without_showing_it(tmp_path, content, problem):
    pw = tmp_path / "pw"
    pw.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SpecError) as err:
        parse_spec(with_(mailboxes__0__password_hash=DELETE, mailboxes__0__password_file="pw"), base_dir=tmp_path)
    assert any(p == "mailboxes[0].password_file" and problem in m for p, m in err.value.problems), err.value
    assert "lines" not in str(err.value).replace("line break", "")


def test_an_empty_password_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("MAILHOST_EMPTY_PW", "")
    with pytest.raises(SpecError, match="MAILHOST_EMPTY_PW holds an empty password"):
        parse_spec(with_(mailboxes__0__password_hash=DELETE, mailboxes__0__password_env="MAILHOST_EMPTY_PW"))


def test_a_directory_or_device_as_a_file_field_is_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    for value in ("dir", "/dev/zero", "x" * 300):
        with pytest.raises(SpecError, match=r"tls.ca_bundle: .* (is not a regular file|is not a readable file)"):
            parse_spec(with_(tls__ca_bundle=value), base_dir=tmp_path)


def test_unusable_resolver_files_are_refused_at_load_naming_their_field(tmp_path):
    """The resolver's root hints and trust anchor are parsed when the spec loads, before anything changes."""
    (tmp_path / "hints.txt").write_text(". NS a.root.test.\na.root.test. A 192.0.2.1\n"
                                        "example.org. MX 10 mail.example.org.\n")
    (tmp_path / "anchor.txt").write_text("this is not a trust anchor\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(with_(resolver={"root_hints": "hints.txt", "trust_anchor": "anchor.txt"})))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    problems = dict(err.value.problems)
    assert problems["resolver.root_hints"] == ("'hints.txt' is not usable: a MX record (root hints hold NS, A and "
                                               "AAAA)")
    assert problems["resolver.trust_anchor"] == ("'anchor.txt' is not usable: not a DS or DNSKEY record: 'this is "
                                                 "not a trust anchor'")
    assert "resolver.root_hints: " in str(err.value) and "resolver.trust_anchor: " in str(err.value)

    (tmp_path / "hints.txt").write_text(". NS a.root.test.\na.root.test. IN A 192.0.2.1\n")
    (tmp_path / "anchor.txt").write_text("test. IN DS 20326 8 2 "
                                         "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n")
    spec = load_spec(path)
    assert (spec.resolver.root_hints, spec.resolver.trust_anchor) == ("hints.txt", "anchor.txt")


def test_error_messages_never_repeat_a_huge_value():
    with pytest.raises(SpecError) as err:
        parse_spec(with_(hostname="x" * 1_000_000, domains__0__spf="y" * 1_000_000))
    assert len(str(err.value)) < 600, len(str(err.value))


LOADER_CASES = [
    ("duplicate key", b"hostname: a.example.org\ndomains: []\nhostname: b.example.org\n",
     "line 3, column 1: the key 'hostname' is given twice (lines 1 and 3)"),
    ("billion laughs", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       b"c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "cannot use YAML anchors and aliases"),
    ("deep nesting", b"hostname: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ("Latin-1", "hostname: m\u00e4il.example.org\n".encode("latin-1"), "not UTF-8 text (byte 11)"),
    ("UTF-16 with a BOM", "hostname: mail.example.org\n".encode("utf-16"), "UTF-16; save it as UTF-8"),
]


@pytest.mark.parametrize("label,raw,message", LOADER_CASES, ids=[c[0] for c in LOADER_CASES])
def test_a_file_that_is_not_a_plain_yaml_spec_is_refused_clearly(tmp_path, label, raw, message):
    path = tmp_path / "spec.yaml"
    path.write_bytes(raw)
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_spec(path)
    assert len(str(err.value)) < 400


def test_a_fifo_a_device_or_a_long_path_as_the_spec_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, message in ((tmp_path / "fifo", "is not a regular file"), ("/dev/zero", "is not a regular file"),
                          (tmp_path, "is not a regular file"), ("x" * 4000, "File name too long")):
        with pytest.raises(SpecError, match=message) as err:
            load_spec(path)
        assert len(str(err.value)) < 600


def test_a_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(MINIMAL).encode())
    assert load_spec(path).hostname == "mail.example.org"


@pytest.mark.parametrize("label,data,path,message", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_rejected_with_its_field_path(label, data, path, message):
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert any(p == path and message in m for p, m in err.value.problems), err.value.problems
    assert f"{path}: " in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SpecError) as err:
        parse_spec(with_(hostname="bad name", domains__0__name="also bad", limits__x=1))
    assert {p for p, _ in err.value.problems} >= {"hostname", "domains[0].name", "limits.x"}


def test_not_a_mapping_and_not_yaml(tmp_path):
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec(["hostname"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("hostname: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_json_schema_matches_the_spec():
    schema = json_schema()
    json.dumps(schema)  # serialisable
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"hostname", "domains", "mailboxes"}
    mailbox = schema["properties"]["mailboxes"]["items"]
    assert mailbox["additionalProperties"] is False and "password_hash" in mailbox["properties"]
    assert schema["properties"]["limits"]["properties"]["message_size"]["default"] == 25 * 1024 * 1024
    example = yaml.safe_load((REPO / "specs/example.yaml").read_text())
    assert set(example) <= set(schema["properties"])


def test_published_schema_is_current():
    """docs/spec.schema.json is what `mailhost spec schema` prints (regenerate it when the spec changes)."""
    assert json.loads((REPO / "docs/spec.schema.json").read_text()) == json_schema()
