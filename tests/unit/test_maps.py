"""What the spec means for Postfix and Dovecot tables; and hashing that keeps re-runs idempotent."""

from __future__ import annotations



import pytest

from mailhost import maps
from mailhost.passwords import crypt, password_hash, sha512_crypt
from mailhost.spec import parse_spec

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("PW_BOB", "s3cret bob")
    (tmp_path / "carol.pw").write_text("carol's\n")
    return parse_spec({
        "hostname": "mail.example.org",
        "domains": [{"name": "example.org"}, {"name": "example.net"}],
        "mailboxes": [{"address": "alice@example.org", "password_hash": HASH, "quota": "2G"},
                      {"address": "bob@example.org", "password_env": "PW_BOB"},
                      {"address": "carol@example.net", "password_file": "carol.pw"}],
        "aliases": [{"source": "postmaster@example.org", "destinations": ["alice@example.org", "bob@example.org"]},
                    {"source": "@example.net", "destinations": ["carol@example.net"]},
                    {"source": "fwd@example.org", "destinations": ["someone@elsewhere.org"]}],
    }, base_dir=tmp_path)


def test_mailboxes_and_aliases(spec):
    assert maps.virtual_mailboxes(spec) == [("alice@example.org", "OK"), ("bob@example.org", "OK"),
                                            ("carol@example.net", "OK")]
    aliases = dict(maps.virtual_aliases(spec))
    assert aliases["postmaster@example.org"] == "alice@example.org,bob@example.org"
    assert aliases["@example.net"] == "carol@example.net"
    # With a catch-all, every mailbox maps to itself so the catch-all cannot swallow it.
    assert aliases["alice@example.org"] == "alice@example.org"


def test_users_may_send_as_themselves_and_their_aliases_only(spec):
    logins = dict(maps.sender_logins(spec))
    assert logins["alice@example.org"] == "alice@example.org"
    assert logins["postmaster@example.org"] == "alice@example.org,bob@example.org"
    assert logins["@example.net"] == "carol@example.net"
    assert "fwd@example.org" not in logins  # forwards only to the outside: nobody of ours sends as it


def test_dovecot_users_never_contain_plaintext_and_are_stable(spec, tmp_path):
    lines = maps.dovecot_users(spec, tmp_path)
    assert lines == maps.dovecot_users(spec, tmp_path)  # same on every run: no change on re-run
    text = "\n".join(lines)
    assert "s3cret bob" not in text and "carol's" not in text
    assert lines[0] == f"alice@example.org:{HASH}::::::userdb_quota_rule=*:storage={2 * 1024 ** 3}B"
    bob = lines[1].split(":")[1]
    assert bob.startswith("{SHA512-CRYPT}$6$rounds=100000$")
    assert crypt.crypt("s3cret bob", bob.removeprefix("{SHA512-CRYPT}")) == bob.removeprefix("{SHA512-CRYPT}")


def test_same_password_different_mailboxes_different_salts():
    assert sha512_crypt("pw", "a@example.org") != sha512_crypt("pw", "b@example.org")


def test_given_hash_is_used_verbatim(spec, tmp_path):
    assert password_hash(spec.mailboxes[0], tmp_path) == HASH
