"""Forwarding to outside addresses: when SRS is on, the domain it uses, and the files it needs."""

from __future__ import annotations

import subprocess

import pytest

from mailhost import hostinfo
from mailhost.spec import SpecError, parse_spec
from roles._config import render, template_path

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86


def spec(aliases=(), **extra):
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}, {"name": "example.net"}],
                       "mailboxes": [{"address": "a@example.org", "password_hash": HASH}],
                       "aliases": [{"source": s, "destinations": d} for s, d in aliases], **extra})


def test_srs_is_on_only_where_mail_may_be_forwarded_outside():
    assert spec().srs_domain is None
    assert spec([("b@example.net", ["a@example.org"])]).srs_domain is None  # ours to ours
    assert spec([("b@example.net", ["a@example.org", "x@elsewhere.example"])]).srs_domain == "example.org"
    assert spec(features={"managesieve": True}).srs_domain == "example.org"  # users may redirect
    assert spec([("b@example.net", ["x@elsewhere.example"])], forwarding={"srs_domain": "example.net"}
                ).srs_domain == "example.net"
    assert spec([("b@example.net", ["x@elsewhere.example"])], forwarding={"srs": False}).srs_domain is None


def test_the_srs_domain_must_be_ours():
    with pytest.raises(SpecError, match=r"forwarding.srs_domain: 'elsewhere.example' is not one of the mail domains"):
        spec(forwarding={"srs_domain": "elsewhere.example"})


def test_postsrsd_gets_our_domains_as_a_shell_file_and_postfix_its_tables():
    forwarding = spec([("b@example.net", ["x@elsewhere.example"])])
    default = render(template_path("roles/postsrsd/__init__.py", "/etc/default/postsrsd"), spec=forwarding)
    sourced = subprocess.run(["sh", "-c", f"{default}\necho \"$SRS_DOMAIN|$SRS_EXCLUDE_DOMAINS|$SRS_FORWARD_PORT\""],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert sourced == f"example.org|example.org,example.net|{hostinfo.SRS_FORWARD_PORT}"
    main = render(template_path("roles/postfix/__init__.py", "/etc/postfix/main.cf"), spec=forwarding,
                  tls="/etc/letsencrypt/live/mail.example.org")
    assert f"sender_canonical_maps = {hostinfo.SRS_FORWARD_TABLE}\n" in main
    assert f"recipient_canonical_maps = {hostinfo.SRS_REVERSE_TABLE}\n" in main
    plain = render(template_path("roles/postfix/__init__.py", "/etc/postfix/main.cf"), spec=spec(),
                   tls="/etc/letsencrypt/live/mail.example.org")
    assert "canonical_maps" not in plain


def test_verify_asks_postsrsd_both_ways():
    from mailhost.verify.checks.host import check_srs
    from mailhost.verify.result import Status
    forwarding = spec([("b@example.net", ["x@elsewhere.example"])])
    srs = "SRS0=abcd=XY=srs-check.invalid=verify-probe@example.org"

    def host(forward: str, back: str):
        return lambda command: forward if hostinfo.SRS_FORWARD_TABLE in command else back

    (good,) = check_srs(host(srs, "verify-probe@srs-check.invalid"), forwarding)
    assert good.status is Status.OK and "@example.org" in good.message
    (down,) = check_srs(host("postmap: fatal: connect to 127.0.0.1:10001: Connection refused", ""), forwarding)
    assert down.status is Status.ERROR and "Connection refused" in down.message
    (one_way,) = check_srs(host(srs, ""), forwarding)
    assert one_way.status is Status.ERROR and "and back to nothing" in one_way.message
    assert list(check_srs(host("", ""), spec())) == []  # nothing forwards outside: no postsrsd to ask
