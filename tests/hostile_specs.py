"""Hostile and odd specs, generated (Hypothesis strategies): the unit fuzz test feeds them to the loader and
renders what it accepts; the end-to-end lane parses those renders back with the host's own Postfix."""

from __future__ import annotations

import copy

from hypothesis import strategies as st

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86
SECRET = "s3cret-Value-never-shown"

BASE = {
    "hostname": "mail.example.org",
    "domains": [{"name": "example.org", "dkim_selectors": ["mail"]}, {"name": "example.net"}],
    "mailboxes": [{"address": "alice@example.org", "password_hash": HASH, "quota": "1G"},
                  {"address": "bob@example.net", "password_hash": HASH}],
    "aliases": [{"source": "info@example.org", "destinations": ["alice@example.org", "x@elsewhere.test"]},
                {"source": "@example.net", "destinations": ["bob@example.net"]}],
    "fail2ban": {"ignore": ["192.0.2.0/24"], "maxretry": 5, "bantime": "1h"},
    "firewall": {"ssh_sources": ["198.51.100.7"], "allow": [{"port": 8080, "sources": ["2001:db8::/64"]}]},
    "dns": {"ttl": 3600, "spf": "v=spf1 mx -all", "dmarc": {"rua": ["alice@example.org"]}},
    "dkim": {"selectors": ["mail"], "key_bits": 2048},
    "tls": {"contact": "alice@example.org"},
    "addresses": {"ipv4": "192.0.2.10", "ipv6": "2001:db8::10"},
}

# Where a hostile value is put: every string and number a template, a map or a command receives.
PATHS = [
    ("hostname",), ("domains", 0, "name"), ("domains", 1, "name"), ("domains", 0, "dkim_selectors", 0),
    ("domains", 0, "spf"), ("mailboxes", 0, "address"), ("mailboxes", 1, "address"),
    ("mailboxes", 0, "password_hash"), ("mailboxes", 0, "quota"), ("aliases", 0, "source"),
    ("aliases", 0, "destinations", 0), ("aliases", 1, "source"), ("fail2ban", "ignore", 0),
    ("fail2ban", "maxretry"), ("fail2ban", "bantime"), ("firewall", "ssh_sources", 0),
    ("firewall", "allow", 0, "port"), ("firewall", "allow", 0, "sources", 0), ("dns", "ttl"), ("dns", "spf"),
    ("dns", "dmarc", "rua", 0), ("dkim", "selectors", 0), ("dkim", "key_bits"), ("tls", "contact"),
    ("tls", "acme_directory"), ("addresses", "ipv4"), ("addresses", "ipv6"), ("limits", "message_size"),
    ("verify", "cert_min_days"), ("dns", "owner"), ("mailboxes", 1, "password_env"),
]
SECRET_FIELDS = {("mailboxes", 0, "password_hash"), ("mailboxes", 1, "password_env")}

# Fragments that mean something to a shell, a config file, a map, YAML or a regular expression.
NASTY = ["\n", "\r", "\x00", "\t", "\x1b", "\u2028", " ", "#", ":", ";", "%", "$", "`", "$(id)", "'", '"', "\\",
         "{", "}", "[", "]", ",", "=", "@", "..", ".", "-", "*", "/", "\u00e9", "\U0001f4e7", SECRET]

fragments = st.one_of(st.sampled_from(NASTY), st.text(max_size=8), st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True))
hostile_text = st.builds(
    lambda parts, base: (base or "") + "".join(parts), st.lists(fragments, min_size=1, max_size=6),
    st.sampled_from([None, "mail.example.org", "alice@example.org", "example.org", "192.0.2.1", "fe80::1"]))
# Values a spec may well hold (so that many generated specs are accepted and get rendered): names, odd
# but valid local parts, addresses of our domains, IPs and networks, numbers and sizes in range.
label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
local_part = st.from_regex(r"[A-Za-z0-9!$%&'*+/=?^_`{|}~-][A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{0,20}(\.[A-Za-z0-9-]{1,5})?",
                           fullmatch=True)
plausible = st.one_of(
    st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=1, max_size=3),
              st.sampled_from(["org", "net", "example.org", "example.net"])),
    st.builds(lambda local, domain: f"{local}@{domain}", local_part, st.sampled_from(["example.org", "example.net"])),
    st.ip_addresses().map(str), st.ip_addresses(v=6).map(lambda a: f"{a}/64"), st.integers(1, 100_000),
    st.from_regex(r"[1-9][0-9]{0,3}[KMGsmhdw]?", fullmatch=True))
values = st.one_of(plausible, hostile_text, st.integers(min_value=-2 ** 64, max_value=2 ** 64), st.floats(allow_nan=False),
                   st.booleans(), st.none(), st.lists(hostile_text, max_size=3),
                   st.dictionaries(st.text(max_size=5), hostile_text, max_size=2),
                   st.text(min_size=300, max_size=2000))


def mutated(changes: list[tuple[tuple, object]]) -> dict:
    spec = copy.deepcopy(BASE)
    for path, value in changes:
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value
    return spec
