"""CAA (RFC 8659) and TLS-RPT (RFC 8460) checks over DNS answers from a dict; which TLSA records match a
certificate (RFC 6698, DANE for SMTP: RFC 7672)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailhost.dns.records import rdata
from mailhost.verify.checks.caa import check_caa, issuer_identity, issuers, relevant_caa
from mailhost.verify.checks.dane import matches, spki
from mailhost.verify.checks.tlsrpt import check_tlsrpt
from mailhost.verify.result import Status

HOST = "mail.example.org"


# Answers from a dict, remembering the questions (its few base records are names these checks never ask).
from test_verify_spf_dmarc import Dns  # noqa: E402


def statuses(results) -> list[tuple[Status, str]]:
    return [(r.status, r.message) for r in results]


# -- CAA -----------------------------------------------------------------------------------------------
def test_caa_at_the_host_name_that_allows_the_issuer_is_ok():
    lookup = Dns({(HOST, "CAA"): ['0 issue "letsencrypt.org"', '0 iodef "mailto:security@example.org"']})
    [result] = check_caa(HOST, "letsencrypt.org", lookup)
    assert (result.status, result.message) == (Status.OK, f"CAA at {HOST} allows letsencrypt.org")
    assert lookup.asked == [(HOST, "CAA")]  # found at the name itself: no climbing


def test_caa_is_found_at_a_parent_name_by_climbing():
    lookup = Dns({("example.org", "CAA"): ['0 issue "LetsEncrypt.org; validationmethods=http-01"',
                                           '0 issue "pki.goog"']})
    where, records = relevant_caa(HOST, lookup)
    assert where == "example.org" and issuers(records) == {"letsencrypt.org", "pki.goog"}  # parameters dropped
    assert lookup.asked == [(HOST, "CAA"), ("example.org", "CAA")]  # stops at the first name that has CAA
    [result] = check_caa(HOST, "letsencrypt.org", lookup)
    assert (result.status, result.message) == (Status.OK, "CAA at example.org allows letsencrypt.org, pki.goog")


def test_the_closest_caa_set_governs_even_when_a_parent_allows_the_issuer():
    lookup = Dns({(HOST, "CAA"): ['0 issue "pki.goog"'], ("example.org", "CAA"): ['0 issue "letsencrypt.org"']})
    [result] = check_caa(HOST, "letsencrypt.org", lookup)
    assert result.status is Status.ERROR
    assert result.message == (f"the CAA records at {HOST} allow pki.goog, not letsencrypt.org, the spec's ACME CA: "
                               "renewals will fail")
    assert result.fix == f'publish {HOST}. IN CAA 0 issue "letsencrypt.org"'


def test_caa_that_forbids_every_ca_leaves_out_the_issuer():
    [result] = check_caa(HOST, "letsencrypt.org", Dns({("example.org", "CAA"): ['0 issue ";"']}))
    assert result.status is Status.ERROR and "the CAA records at example.org allow no CA, not letsencrypt.org" \
        in result.message


def test_no_caa_anywhere():
    lookup = Dns({})
    [result] = check_caa(HOST, "letsencrypt.org", lookup)
    assert (result.status, result.message) == (Status.ERROR, f"no CAA record: any CA may issue for {HOST}")
    assert result.fix == f'publish {HOST}. IN CAA 0 issue "letsencrypt.org" (the deploy does)'
    assert lookup.asked == [(HOST, "CAA"), ("example.org", "CAA"), ("org", "CAA")]
    # The spec's CA has no known CAA identity: nothing to publish, only a hint.
    [result] = check_caa(HOST, None, Dns({}))
    assert (result.status, result.message) == (Status.WARN, "no CAA record: any CA may issue for it")
    assert "tls.caa_issuer" in result.fix


def test_caa_without_an_issue_property_restricts_nothing():
    """Only iodef, or issuewild (ignored for a name without a wildcard): any CA may issue (RFC 8659). It was
    reported as allowing no CA, so that renewals would fail."""
    lookup = Dns({("example.org", "CAA"): ['0 iodef "mailto:security@example.org"', '0 issuewild "pki.goog"']})
    [result] = check_caa(HOST, "letsencrypt.org", lookup)
    assert (result.status, result.message) == (
        Status.ERROR, f"the CAA records at example.org restrict no issuance: any CA may issue for {HOST}")
    [result] = check_caa(HOST, None, lookup)
    assert (result.status, result.message) == (
        Status.WARN, "the CAA records at example.org restrict no issuance: any CA may issue for it")


def test_caa_any_issuer_is_ok_when_the_spec_names_none():
    [result] = check_caa(HOST, None, Dns({(HOST, "CAA"): ['0 issue "sectigo.com"']}))
    assert (result.status, result.message) == (Status.OK, f"CAA at {HOST} allows sectigo.com")


def test_caa_lookup_timeout_is_a_timeout():
    [result] = check_caa(HOST, "letsencrypt.org", Dns({}, slow=(("example.org", "CAA"),)))
    assert result.status is Status.TIMEOUT and f"CAA of {HOST}" in result.message


# -- TLS-RPT -------------------------------------------------------------------------------------------
def tlsrpt(*records: str):
    return list(check_tlsrpt("example.org", Dns({("_smtp._tls.example.org", "TXT"): list(records)})))


@pytest.mark.parametrize("record,where", [
    ("v=TLSRPTv1; rua=mailto:postmaster@example.org", "mailto:postmaster@example.org"),
    ("v=TLSRPTv1;rua=mailto:a@example.org,mailto:b@example.net;", "mailto:a@example.org,mailto:b@example.net"),
    ("v=TLSRPTv1; rua=https://reports.example.net/tlsrpt", "https://reports.example.net/tlsrpt"),
])
def test_a_good_tlsrpt_record_is_ok(record, where):
    assert statuses(tlsrpt(record, "some-other=verification")) == [(Status.OK, f"TLS reports go to {where}")]


def test_a_missing_tlsrpt_record_is_an_error():
    [result] = tlsrpt("google-site-verification=abc")  # a TXT there, but not TLS-RPT
    assert (result.status, result.message) == (
        Status.ERROR, "no TLS-RPT record at _smtp._tls.example.org: senders cannot report TLS failures")
    assert result.fix == ('publish _smtp._tls.example.org. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.org" '
                          "(the deploy does)")
    assert [r.status for r in check_tlsrpt("example.org", Dns({}))] == [Status.ERROR]


def test_two_tlsrpt_records_are_an_error():
    [result] = tlsrpt("v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org")
    assert (result.status, result.message) == (
        Status.ERROR, "2 TLS-RPT records at _smtp._tls.example.org: senders ignore them all")


@pytest.mark.parametrize("record", [
    "v=TLSRPTv1",
    "v=TLSRPTv1; rua=postmaster@example.org",  # not a URI
    "v=TLSRPTv1; rua=mailto:postmaster",  # no domain
    "v=TLSRPTv1; rua=http://reports.example.net/",  # https only
    "v=TLSRPTv1; ruf=mailto:postmaster@example.org",
])
def test_a_malformed_tlsrpt_record_is_an_error(record):
    [result] = tlsrpt(record)
    assert (result.status, result.message) == (Status.ERROR, f"the TLS-RPT record is malformed: {record!r}")


def test_tlsrpt_lookup_timeout_is_a_timeout():
    [result] = check_tlsrpt("example.org", Dns({}, slow=(("_smtp._tls.example.org", "TXT"),)))
    assert result.status is Status.TIMEOUT


# -- DANE: TLSA records against a certificate ------------------------------------------------------------
def certificate(key=None, issuer_organization: str | None = None) -> x509.Certificate:
    """A certificate for HOST, self-signed unless an issuer organization is named."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_organization),
                        x509.NameAttribute(NameOID.COMMON_NAME, "R11")]) if issuer_organization else name
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def cert(key):
    return certificate(key)


def tlsa(usage: int, selector: int, mtype: int, data: bytes):
    digest = {0: data, 1: hashlib.sha256(data).digest(), 2: hashlib.sha512(data).digest()}[mtype]
    return rdata("TLSA", f"{usage} {selector} {mtype} {digest.hex()}")


def test_spki_is_the_der_subject_public_key_info(cert, key):
    assert spki(cert) == key.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("usage,selector,mtype", [(3, 1, 1), (3, 0, 1), (3, 1, 2), (3, 1, 0), (1, 1, 1)],
                         ids=["3 1 1 (what mailhost publishes)", "3 0 1 (the whole certificate)", "3 1 2 (SHA-512)",
                              "3 1 0 (the key itself)", "1 1 1 (PKIX-EE)"])
def test_a_tlsa_record_of_the_certificate_or_its_key_matches(cert, usage, selector, mtype):
    data = cert.public_bytes(serialization.Encoding.DER) if selector == 0 else spki(cert)
    assert matches(tlsa(usage, selector, mtype, data), cert)


def test_a_tlsa_record_of_another_key_does_not_match(cert):
    other = certificate()
    for selector in (0, 1):
        data = other.public_bytes(serialization.Encoding.DER) if selector == 0 else spki(other)
        assert not matches(tlsa(3, selector, 1, data), cert)


def test_a_renewed_certificate_with_the_same_key_still_matches_3_1_1_but_not_3_0_1(cert, key):
    renewed = certificate(key)
    assert matches(tlsa(3, 1, 1, spki(cert)), renewed)
    assert not matches(tlsa(3, 0, 1, cert.public_bytes(serialization.Encoding.DER)), renewed)


@pytest.mark.parametrize("usage", [0, 2])
def test_ca_usages_are_not_matched_against_the_servers_own_certificate(cert, usage):
    """Usage 0/2 name a CA certificate: even the server's own key under them is no match here."""
    assert not matches(tlsa(usage, 1, 1, spki(cert)), cert)
    assert not matches(tlsa(usage, 0, 1, cert.public_bytes(serialization.Encoding.DER)), cert)


def _issued_by(organization: str | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = [x509.NameAttribute(NameOID.COMMON_NAME, "R11")] + (
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else [])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m")]))
            .issuer_name(x509.Name(issuer)).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))


def test_the_served_certificates_ca_is_known_by_its_organisation():
    assert issuer_identity(_issued_by("Let's Encrypt")) == "letsencrypt.org"
    assert issuer_identity(_issued_by("Google Trust Services")) == "pki.goog"
    assert issuer_identity(_issued_by("Pebble Test CA")) is None and issuer_identity(_issued_by(None)) is None
