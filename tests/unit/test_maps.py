"""What the spec means for Postfix and Dovecot tables; and hashing that keeps re-runs idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from passlib.hash import sha512_crypt as reference

from mailhost import maps, tables
from mailhost.passwords import password_hash, sha512_crypt
from mailhost.spec import parse_spec
from roles._config import render

USERS_TEMPLATE = Path(__file__).parents[2] / "roles/dovecot/templates/etc/dovecot/users.j2"

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


ROLE_BOXES = ("alice@example.org", "bob@example.org", "carol@example.net")


def role_spec(aliases=(), domains=("example.org", "example.net"), mailboxes=ROLE_BOXES):
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": d} for d in domains],
                       "mailboxes": [{"address": a, "password_hash": HASH} for a in mailboxes],
                       "aliases": [{"source": s, "destinations": list(d)} for s, d in aliases]})


def test_postmaster_and_abuse_of_every_domain_go_to_its_first_mailbox():
    """RFC 5321 4.5.1 and RFC 2142: every mail domain receives postmaster@ (and abuse@); the DMARC and TLS
    reports go there by default."""
    spec = role_spec()
    assert spec.role_aliases == {
        "postmaster@example.org": "alice@example.org", "abuse@example.org": "alice@example.org",
        "postmaster@example.net": "carol@example.net", "abuse@example.net": "carol@example.net"}
    assert maps.virtual_aliases(spec) == sorted(spec.role_aliases.items())  # nothing else: no alias, no catch-all


def test_a_domain_without_mailboxes_sends_its_role_addresses_to_the_first_mailbox():
    spec = role_spec(domains=("example.org", "example.com"), mailboxes=("bob@example.org", "alice@example.org"))
    assert spec.role_aliases == {
        "postmaster@example.org": "bob@example.org", "abuse@example.org": "bob@example.org",
        "postmaster@example.com": "bob@example.org", "abuse@example.com": "bob@example.org"}


def test_role_addresses_the_spec_routes_are_left_to_the_spec():
    spec = role_spec(aliases=[("postmaster@example.org", ["bob@example.org"]),
                              ("abuse@example.net", ["someone@elsewhere.example"])],
                     mailboxes=("alice@example.org", "bob@example.org", "carol@example.net", "abuse@example.org"))
    # postmaster@example.org: the spec's alias; abuse@example.org: a mailbox of its own; abuse@example.net: the
    # spec's forward
    assert spec.role_aliases == {"postmaster@example.net": "carol@example.net"}
    aliases = maps.virtual_aliases(spec)
    assert dict(aliases) == {"postmaster@example.org": "bob@example.org",
                             "abuse@example.net": "someone@elsewhere.example",
                             "postmaster@example.net": "carol@example.net"}
    assert len(aliases) == len(dict(aliases))  # one row per address: never the spec's and ours both


def test_a_catch_all_receives_the_role_addresses_itself():
    spec = role_spec(aliases=[("@example.net", ["alice@example.org"])])
    assert spec.role_aliases == {"postmaster@example.org": "alice@example.org",
                                 "abuse@example.org": "alice@example.org"}
    aliases = dict(maps.virtual_aliases(spec))
    assert "postmaster@example.net" not in aliases and "abuse@example.net" not in aliases
    assert aliases["@example.net"] == "alice@example.org"
    assert aliases["carol@example.net"] == "carol@example.net"  # a mailbox the catch-all must not swallow


def test_users_may_send_as_themselves_and_their_aliases_only(spec):
    logins = dict(maps.sender_logins(spec))
    assert logins["alice@example.org"] == "alice@example.org"
    assert logins["postmaster@example.org"] == "alice@example.org,bob@example.org"
    assert logins["@example.net"] == "carol@example.net"
    assert "fwd@example.org" not in logins  # forwards only to the outside: nobody of ours sends as it


def test_dovecot_users_never_contain_plaintext_and_are_stable(spec, tmp_path):
    users = maps.dovecot_users(spec)
    assert users == maps.dovecot_users(spec)  # same on every run: no change on re-run
    text = repr(users)
    assert "s3cret bob" not in text and "carol's" not in text
    assert users[0] == ("alice@example.org", HASH, 2 * 1024 ** 3)
    assert users[2][2] == 1024 ** 3  # the default quota
    bob = users[1][1]
    assert bob.startswith("{SHA512-CRYPT}$6$rounds=100000$")
    assert reference.verify("s3cret bob", bob.removeprefix("{SHA512-CRYPT}"))


@pytest.mark.parametrize("v24, quota_field", [(True, "userdb_quota_storage_size=2147483648B"),
                                              (False, "userdb_quota_rule=*:storage=2147483648B")])
def test_users_file_is_one_passwd_line_per_mailbox_in_the_installed_dovecots_syntax(spec, tmp_path, v24,
                                                                                    quota_field):
    text = render(str(USERS_TEMPLATE), users=maps.dovecot_users(spec), v24=v24)
    lines = [line for line in text.splitlines() if line]
    assert len(lines) == 3
    assert lines[0] == f"alice@example.org:{HASH}::::::{quota_field}"
    assert all(len(line.split(":")) == 8 + (0 if v24 else 1) for line in lines)  # user:pw:uid:gid:gecos:home:shell:extra


# Computed with glibc's crypt(3) (Python 3.11's `crypt` module, the salt as `sha512_crypt` derives it): what
# libpass computes is what Dovecot, through crypt(3), verifies.
GLIBC_HASHES = [
    ("s3cret bob", "bob@example.org", "$6$rounds=100000$aVAC8D.5.QddksIH$M8wyQXfXQDUhsJP6uG6AlZa4rx2YJ5Ehpn4pcZOTQ"
                                      "zrpPnx0qfmZuhwRiAxDSfUxDiEm5Hqo3FrjiXbfVJ1FJ0"),
    ("pässwörd ✓", "ünï@example.org", "$6$rounds=100000$mOSTWqYDtvx3ZDUY$idw3El8pPl5vzPiIoaby59f8PBeM0w26jsUOTxYlg"
                                      "68oghGWWZ7jPaY3.wBseGoUXkmymv9/BG6RUi3cKY.bR."),
]


@pytest.mark.parametrize("password, address, expected", GLIBC_HASHES)
def test_hashes_are_byte_for_byte_what_glibc_crypt_makes(password, address, expected):
    assert sha512_crypt(password, address) == "{SHA512-CRYPT}" + expected


def test_same_password_different_mailboxes_different_salts():
    assert sha512_crypt("pw", "a@example.org") != sha512_crypt("pw", "b@example.org")


def _salt(hashed: str) -> str:
    return hashed.split("$")[3]


def test_the_salt_tells_nothing_of_the_password():
    """The salt is stored in the clear: were it made from the password, a guess could be tested against it
    with one fast hash instead of SHA512-CRYPT's 100,000 rounds."""
    one, other = sha512_crypt("correct horse", "a@example.org"), sha512_crypt("battery staple", "a@example.org")
    assert one != other
    assert _salt(one) == _salt(other)
    assert reference.verify("correct horse", one.removeprefix("{SHA512-CRYPT}"))


def test_given_hash_is_used_verbatim(spec, tmp_path):
    assert password_hash(spec.mailboxes[0], tmp_path) == HASH


@pytest.mark.parametrize("write, args", [
    (tables.key_value, ("alice@example.org\nbob@example.org", "OK")),   # a second line
    (tables.key_value, ("#alice@example.org", "OK")),                    # a comment
    (tables.key_value, ("alice@example.org", "a@example.org b")),        # a second value
    (tables.key_value, ("", "OK")),
    (tables.passwd_entry, ("alice@example.org", "{PLAIN}x:1000")),       # shifts the uid field
    (tables.passwd_entry, ("alice:x@example.org", "{PLAIN}x")),
    (tables.passwd_entry, ("alice@example.org", "{PLAIN}x", "userdb_quota_rule=*:storage=1B\nbob:x")),
    (tables.ucl_string, ('example.org"; enabled = false; x = "',)),    # ends the string
    (tables.ucl_string, ("${CONFDIR}/x",)),                             # a UCL variable
    (tables.ucl_string, ("a\\",)),
])
def test_table_writers_refuse_what_would_change_the_file_structure(write, args):
    """The last line behind the spec's checks: such a value stops the run instead of splitting a line."""
    with pytest.raises(tables.TableError, match="cannot be written|comment"):
        write(*args)


def test_table_writers_write_one_line_of_fields():
    assert tables.ucl_string("/etc/mailhost/dkim/example.org/mail.rsa") == '"/etc/mailhost/dkim/example.org/mail.rsa"'
    assert tables.key_value("*@example.org", "mail._domainkey.example.org") == "*@example.org mail._domainkey.example.org"
    assert tables.passwd_entry("ünï@example.org", "{SHA512-CRYPT}$6$x", "userdb_quota_rule=*:storage=1B") == \
        "ünï@example.org:{SHA512-CRYPT}$6$x::::::userdb_quota_rule=*:storage=1B"
