"""The DANE key rollover's decision: the standby key takes over only once its TLSA record has been published
for dns.ttl and every authoritative nameserver serves it; otherwise the run says why it waits."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailhost import rollover
from mailhost.spec import parse_spec

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86
NOW = 1_800_000_000.0


def spki_b64() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def make_spec(generation: int = 2, ttl: int = 3600):
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                       "mailboxes": [{"address": "a@example.org", "password_hash": HASH}],
                       "tls": {"key_generation": generation}, "dns": {"ttl": ttl}})


@pytest.fixture
def keys():
    first, second = rollover.slots(make_spec())
    return {first: spki_b64(), second: spki_b64()}


def state(keys, published_ago: float | None = 4000, generation: int = 1, current: str | None = "mail.example.org",
          rekey: str | None = None) -> rollover.HostTls:
    standby = rollover.other(make_spec(), current or "mail.example.org")
    published = None if published_ago is None else (rollover.key_digest(keys[standby]), NOW - published_ago)
    return rollover.HostTls(current, generation, published, rekey)


def everywhere(value: str) -> bool:
    return True


def test_slots_and_their_other():
    spec = make_spec()
    assert rollover.slots(spec) == ("mail.example.org", "mail.example.org-b")
    assert rollover.other(spec, "mail.example.org") == "mail.example.org-b"
    assert rollover.other(spec, "mail.example.org-b") == "mail.example.org"


def test_nothing_to_do_when_the_generation_is_applied(keys):
    decision = rollover.decide(make_spec(generation=1), state(keys), keys, NOW, everywhere)
    assert decision == rollover.Decision(False, "")


def test_the_standby_takes_over_once_published_for_the_ttl_and_served_everywhere(keys):
    asked = []
    decision = rollover.decide(make_spec(), state(keys), keys, NOW, lambda value: asked.append(value) or True)
    assert decision.rotate and "mail.example.org-b" in decision.reason
    standby_value = "3 1 1 " + __import__("hashlib").sha256(base64.b64decode(keys["mail.example.org-b"])).hexdigest()
    assert asked == [standby_value]  # the standby's record is what every nameserver must serve


@pytest.mark.parametrize("ago, says", [(10, "waits until 3590 s"), (3599, "waits until 1 s")])
def test_too_soon_after_the_publish_it_waits_and_says_until_when(keys, ago, says):
    decision = rollover.decide(make_spec(), state(keys, published_ago=ago), keys, NOW, everywhere)
    assert not decision.rotate and says in decision.reason


def test_a_standby_never_noted_as_published_waits(keys):
    decision = rollover.decide(make_spec(), state(keys, published_ago=None), keys, NOW, everywhere)
    assert not decision.rotate and "not been published" in decision.reason


def test_a_note_about_another_key_does_not_count(keys):
    noted = state(keys)
    stale = rollover.HostTls(noted.current, noted.generation, ("0" * 64, NOW - 99999))
    assert not rollover.decide(make_spec(), stale, keys, NOW, everywhere).rotate


@pytest.mark.parametrize("served", [False, None])
def test_a_nameserver_without_the_record_or_no_answer_makes_it_wait(keys, served):
    decision = rollover.decide(make_spec(), state(keys), keys, NOW, lambda value: served)
    assert not decision.rotate and "nameserver" in decision.reason


def test_a_missing_certificate_or_a_pending_new_key_makes_it_wait(keys):
    only_one = {"mail.example.org": keys["mail.example.org"]}
    assert not rollover.decide(make_spec(), state(keys), only_one, NOW, everywhere).rotate
    owed = state(keys, rekey="mail.example.org-b")
    decision = rollover.decide(make_spec(), owed, keys, NOW, everywhere)
    assert not decision.rotate and "still to get its new key" in decision.reason


def test_from_the_second_slot_the_first_is_the_standby(keys):
    decision = rollover.decide(make_spec(), state(keys, current="mail.example.org-b"), keys, NOW, everywhere)
    assert decision.rotate and "switch to mail.example.org's key" in decision.reason


def test_the_host_state_is_read_from_the_fact_lines():
    parsed = rollover.HostTls.parse(["current /etc/letsencrypt/live/mail.example.org-b", "generation 3",
                                     "published abc 1700000000", "rekey mail.example.org"])
    assert parsed == rollover.HostTls("mail.example.org-b", 3, ("abc", 1700000000.0), "mail.example.org")
    assert rollover.HostTls.parse(["current", "generation 1", "published", "rekey"]) == \
        rollover.HostTls(None, 1, None, None)
