"""The resolver's trust anchor and root hints (mailhost.resolver): the spec's files are parsed as DNS records and
written out again in one canonical form; anything else is refused with a ValueError that names the problem."""

from __future__ import annotations

import base64

import dns.dnssec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mailhost.resolver import HINTS_TTL, anchor_zone, root_hints_lines, trust_anchor_lines

DIGEST = "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"  # the root's KSK-2017 (SHA-256)
DIGEST_2024 = "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16"


def dnskey():
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return dns.dnssec.make_dnskey(public, dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)


# -- trust anchor --------------------------------------------------------------------------------------
def test_the_roots_ds_records_are_rendered_canonically():
    text = (f"; the root's key-signing keys\n\n"
            f".  172800  IN  DS  20326 8 2 {DIGEST}\n"
            f". ds 38696 8 2 {DIGEST_2024[:32]} {DIGEST_2024[32:]}  ; split digest, no class, no TTL\n")
    assert trust_anchor_lines(text) == [f". IN DS 20326 8 2 {DIGEST.lower()}",
                                        f". IN DS 38696 8 2 {DIGEST_2024.lower()}"]
    assert anchor_zone(text) == "."


def test_a_private_trees_dnskey_is_rendered_canonically_keys_first():
    key = dnskey()
    b64 = base64.b64encode(key.key).decode()
    ds = dns.dnssec.make_ds("test.", key, "SHA256")
    text = f"test. IN DS {ds.to_text()}\ntest. 3600 IN DNSKEY 257 3 13 {b64[:40]} {b64[40:]}\n"
    # dnspython's form of the key: base64 in 32-character chunks (unbound reads it so)
    assert trust_anchor_lines(text) == [f"test. IN DNSKEY {key.to_text()}", f"test. IN DS {ds.to_text()}"]
    assert key.to_text().startswith(f"257 3 13 {b64[:32]} {b64[32:64]}")
    assert anchor_zone(text) == "test."


def test_a_name_without_the_final_dot_is_relative_to_the_root():
    """As in the root hints: `test` is `test.` (it was kept relative, under no name, so nothing validated)."""
    assert trust_anchor_lines(f"test IN DS 20326 8 2 {DIGEST}") == [f"test. IN DS 20326 8 2 {DIGEST.lower()}"]
    assert anchor_zone(f"test IN DS 20326 8 2 {DIGEST}") == "test."


@pytest.mark.parametrize("text,problem", [
    ("", "a trust anchor is DNSKEY or DS records of one zone"),
    ("; only a comment\n\n", "a trust anchor is DNSKEY or DS records of one zone"),
    ("garbage", "not a DS or DNSKEY record: 'garbage'"),
    (". IN A 192.0.2.1", "not a DS or DNSKEY record: '. IN A 192.0.2.1'"),
    (f". CH DS 20326 8 2 {DIGEST}", "not a DS or DNSKEY record"),
    (f". IN DS 20326 8 2 {DIGEST}\ntest. IN DS 20326 8 2 {DIGEST}", "of one zone"),
    (". IN DS 20326 8 2 E06D", "not DS or DNSKEY records in zone-file syntax (digest length inconsistent"),
    (f". IN DS 20326 8 2 {DIGEST[:-2]}ZZ", "not DS or DNSKEY records in zone-file syntax (Non-hexadecimal"),
    (f". IN DS 70000 8 2 {DIGEST}", "not DS or DNSKEY records in zone-file syntax (70000 is not an unsigned 16-bit"),
    (". IN DNSKEY 257 3 13 !!!", "not DS or DNSKEY records in zone-file syntax (Only base64 data is allowed)"),
    (f"a..b. IN DS 20326 8 2 {DIGEST}", "not DS or DNSKEY records in zone-file syntax (A DNS label is empty"),
    (f"a\\032b. IN DS 20326 8 2 {DIGEST}", "the anchor's zone 'a\\\\032b.' is not a plain DNS name"),
    (f"*.test. IN DS 20326 8 2 {DIGEST}", "the anchor's zone '*.test.' is not a plain DNS name"),
], ids=["empty", "comment only", "garbage", "an A record", "class CH", "two zones", "short digest",
        "not hex", "key tag too big", "DNSKEY not base64", "empty label", "escaped space", "wildcard"])
def test_a_bad_trust_anchor_is_refused_naming_the_problem(text, problem):
    with pytest.raises(ValueError) as caught:
        trust_anchor_lines(text)
    assert problem in str(caught.value)
    with pytest.raises(ValueError):
        anchor_zone(text)


# -- root hints ---------------------------------------------------------------------------------------
HINTS = """; a private tree's root servers
.                        3600000      NS    A.ROOT.TEST.
.                                     NS    b.root.test
A.ROOT.TEST.             3600000      A     192.0.2.1
A.ROOT.TEST.             3600000      AAAA  2001:DB8:0::1
b.root.test              60   IN      A     192.0.2.2
"""


def test_root_hints_are_rendered_canonically():
    """Absolute names (a name without the final dot is under the root), a TTL on every line (the one before, or
    the hints' usual one where none is given), the class (which may be written, as `dig` prints it; it was
    refused as "unknown rdatatype 'IN'"), addresses in their short form."""
    assert root_hints_lines(HINTS) == [
        ". 3600000 IN NS A.ROOT.TEST.", ". 3600000 IN NS b.root.test.",
        "A.ROOT.TEST. 3600000 IN A 192.0.2.1", "A.ROOT.TEST. 3600000 IN AAAA 2001:db8::1",
        "b.root.test. 60 IN A 192.0.2.2"]
    assert root_hints_lines(". NS a.root.test.\na.root.test. A 192.0.2.1") == [
        f". {HINTS_TTL} IN NS a.root.test.", f"a.root.test. {HINTS_TTL} IN A 192.0.2.1"]


@pytest.mark.parametrize("text,problem", [
    ("", "every root server needs an address: no root NS record"),
    ("garbage", "not root hints in zone-file syntax"),
    (HINTS + "example.org. MX 10 mail.example.org.\n", "a MX record (root hints hold NS, A and AAAA)"),
    (HINTS + ". SOA a.root.test. hostmaster.test. 1 2 3 4 5\n", "a SOA record (root hints hold NS, A and AAAA)"),
    (HINTS + "test. NS a.root.test.\n", "an NS record for test. (root hints name the root's servers only)"),
    (HINTS + "c.root.test. A 192.0.2.3\n", "an address of c.root.test., which no root NS record names"),
    (HINTS + ". NS c.root.test.\n", "every root server needs an address: c.root.test."),
    ("a.root.test. A 192.0.2.1\n", "an address of a.root.test., which no root NS record names"),
    (HINTS + "c.root.test. A 192.0.2.300\n", "not root hints in zone-file syntax"),
    (". CH NS a.root.test.\na.root.test. A 192.0.2.1\n", "not root hints in zone-file syntax (<input>:1: RR class"),
    ("$INCLUDE /etc/passwd\n", "not root hints in zone-file syntax"),
    ("$ORIGIN test.\n. NS a.root.test.\na.root.test. A 192.0.2.1\n", "not root hints in zone-file syntax"),
], ids=["empty", "garbage", "an MX record", "an SOA record", "NS below the root", "address of no server",
        "server without address", "no NS", "bad address", "class CH", "$INCLUDE", "$ORIGIN"])
def test_bad_root_hints_are_refused_naming_the_problem(text, problem):
    with pytest.raises(ValueError) as caught:
        root_hints_lines(text)
    assert problem in str(caught.value)
