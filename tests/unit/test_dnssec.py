"""Chain validation against zones signed here with real keys (dnspython + cryptography)."""

from __future__ import annotations

import time

import dns.dnssec
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mailhost.dnssec import Anchor, ChainError, validate_chain

N = dns.name.from_text


class SignedTree:
    """`test.` (anchor) delegating securely to `a.test.`, which holds a TXT record."""

    def __init__(self, ds_key=None, sig_lifetime=3600):
        self.now = time.time()
        self.keys = {z: ec.generate_private_key(ec.SECP256R1()) for z in ("test.", "a.test.")}
        self.dnskey = {z: dns.dnssec.make_dnskey(k.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
                       for z, k in self.keys.items()}
        self.records: dict[tuple[str, int], dns.rrset.RRset] = {}
        for zone in self.keys:
            self.add(zone, zone, dns.rrset.from_rdata(zone, 60, self.dnskey[zone]), sig_lifetime)
            self.add(zone, zone, dns.rrset.from_text(zone, 60, "IN", "SOA", "ns1.test. h.test. 1 60 60 60 60"),
                     sig_lifetime)
        ds = dns.dnssec.make_ds("a.test.", ds_key or self.dnskey["a.test."], "SHA256")
        self.add("test.", "a.test.", dns.rrset.from_rdata("a.test.", 60, ds), sig_lifetime)
        self.add("a.test.", "www.a.test.", dns.rrset.from_text("www.a.test.", 60, "IN", "TXT", '"genuine"'),
                 sig_lifetime)

    def add(self, zone: str, name: str, rrset: dns.rrset.RRset, lifetime: float) -> None:
        sig = dns.dnssec.sign(rrset, self.keys[zone], N(zone), self.dnskey[zone],
                              inception=self.now - 60, expiration=self.now + lifetime)
        self.records[(name, rrset.rdtype)] = (rrset, dns.rrset.from_rdata(rrset.name, rrset.ttl, sig))

    def query(self, name: dns.name.Name, rdtype) -> dns.message.Message:
        msg = dns.message.make_response(dns.message.make_query(name, rdtype))
        found = self.records.get((name.to_text(), rdtype))
        if found:
            msg.answer.extend(found)
        return msg


def anchor(tree: SignedTree) -> Anchor:
    return Anchor(N("test."), [tree.dnskey["test."]])


def test_valid_chain_returns_the_rrset():
    tree = SignedTree()
    rrset = validate_chain("www.a.test.", "TXT", anchor(tree), tree.query)
    assert [r.strings for r in rrset] == [(b"genuine",)]


def test_tampered_record_fails():
    tree = SignedTree()
    rrset, sig = tree.records[("www.a.test.", dns.rdatatype.TXT)]
    tree.records[("www.a.test.", dns.rdatatype.TXT)] = (
        dns.rrset.from_text("www.a.test.", 60, "IN", "TXT", '"forged"'), sig)
    with pytest.raises(ChainError, match="www.a.test. TXT: signature does not validate"):
        validate_chain("www.a.test.", "TXT", anchor(tree), tree.query)


def test_ds_for_another_key_breaks_the_delegation():
    other = dns.dnssec.make_dnskey(ec.generate_private_key(ec.SECP256R1()).public_key(),
                                   dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    tree = SignedTree(ds_key=other)
    with pytest.raises(ChainError, match="a.test. DNSKEY: no key matches"):
        validate_chain("www.a.test.", "TXT", anchor(tree), tree.query)


def test_missing_ds_is_reported():
    tree = SignedTree()
    del tree.records[("a.test.", dns.rdatatype.DS)]
    with pytest.raises(ChainError, match="no DS at a.test."):
        validate_chain("www.a.test.", "TXT", anchor(tree), tree.query)


def test_expired_signatures_fail():
    tree = SignedTree(sig_lifetime=120)
    with pytest.raises(ChainError, match="does not validate"):
        validate_chain("www.a.test.", "TXT", anchor(tree), tree.query, now=time.time() + 3600)


def test_unsigned_record_is_reported():
    tree = SignedTree()
    rrset, _ = tree.records[("www.a.test.", dns.rdatatype.TXT)]
    tree.records[("www.a.test.", dns.rdatatype.TXT)] = (rrset,)
    with pytest.raises(ChainError, match="not signed"):
        validate_chain("www.a.test.", "TXT", anchor(tree), tree.query)


def test_name_outside_the_anchor_is_refused():
    tree = SignedTree()
    with pytest.raises(ChainError, match="not under the trust anchor"):
        validate_chain("www.example.org.", "TXT", anchor(tree), tree.query)



def test_a_refused_connection_is_no_answer_like_a_timeout():
    """Verify's DNSSEC checks then report a timeout result instead of raising out of verify."""
    import socket

    import dns.exception

    from mailhost.dnssec import tcp_query
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections to it are refused
        query = tcp_query("127.0.0.1", timeout=2.0, port=closed.getsockname()[1])
        with pytest.raises(dns.exception.Timeout, match="ConnectionRefusedError"):
            query(dns.name.from_text("example.org."), dns.rdatatype.DNSKEY)
