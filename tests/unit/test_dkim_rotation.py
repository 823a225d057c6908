"""DKIM key rotation's decisions, run by run (`mailhost.dkim_keys.decide`), and the host state it reads: the
command run over a real key tree and the rspamd config as the rspamd role renders it."""

from __future__ import annotations

import subprocess

from mailhost import dkim_keys, hostinfo
from mailhost.dkim_keys import HostKeys, decide
from mailhost.spec import parse_spec
from roles._config import render, template_path
from roles.dkim import key_path

HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86
T0 = 1_800_000_000.0
TTL, RETENTION = 3600, 7 * 86400
MAIL, ED, NEW = ("example.org", "mail", "rsa"), ("example.org", "ed25519", "ed25519"), ("example.org", "m2", "rsa")


def spec(selectors=("mail",)):
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                       "mailboxes": [{"address": "a@example.org", "password_hash": HASH}],
                       "dkim": {"selectors": list(selectors)}, "dns": {"ttl": TTL}})


def host(keys, signing, published=None, retired=None) -> HostKeys:
    return HostKeys(frozenset(keys), frozenset(signing), published or {}, retired or {})


def served(answer):
    return lambda key: answer


def test_a_fresh_domain_signs_with_its_new_keys_at_once():
    plan = decide(spec(), host([], []), T0, served(None))
    assert plan.make == plan.sign == sorted([MAIL, ED]) and not plan.retire and not plan.remove and not plan.notes


def test_a_converged_domain_changes_nothing():
    plan = decide(spec(), host([MAIL, ED], [MAIL, ED], {MAIL: T0, ED: T0}), T0 + 10 ** 6, served(True))
    assert plan.sign == sorted([MAIL, ED]) and not (plan.make or plan.retire or plan.remove or plan.notes)
    assert not plan.changes_dns


def test_a_renamed_selector_rotates_over_several_runs_without_a_gap():
    rotated = spec(("m2",))
    # 1: the new key is made (and published by this run's DNS stage); the old one goes on signing.
    first = decide(rotated, host([MAIL, ED], [MAIL, ED], {MAIL: T0, ED: T0}), T0 + 100, served(None))
    assert first.make == [NEW] and first.sign == sorted([MAIL, ED]) and not first.retire and first.changes_dns
    assert "made and published by this run" in first.notes[0]
    # 2: before dns.ttl has passed, it still waits (and says until when).
    state = host([MAIL, ED, NEW], [MAIL, ED], {MAIL: T0, ED: T0, NEW: T0 + 100})
    early = decide(rotated, state, T0 + 100 + TTL - 1, served(True))
    assert early.sign == sorted([MAIL, ED]) and not early.retire and "switches (dns.ttl)" in early.notes[0]
    # ... and after it, until every authoritative nameserver serves the new record.
    for answer in (False, None):
        unseen = decide(rotated, state, T0 + 100 + TTL, served(answer))
        assert unseen.sign == sorted([MAIL, ED]) and "every authoritative nameserver" in unseen.notes[0]
    # 3: then it signs, and the old key is retired (still published).
    switch = decide(rotated, state, T0 + 100 + TTL, served(True))
    assert switch.sign == sorted([ED, NEW]) and switch.retire == [MAIL] and not switch.remove
    assert not switch.changes_dns  # both records stay
    # 4: within dkim.retention the old key stays; after it, it is withdrawn and removed.
    after = host([MAIL, ED, NEW], [ED, NEW], {MAIL: T0, ED: T0, NEW: T0 + 100}, {MAIL: T0 + 5000})
    kept = decide(rotated, after, T0 + 5000 + RETENTION - 1, served(True))
    assert not kept.remove and not kept.retire and "stays published until" in kept.notes[0]
    gone = decide(rotated, after, T0 + 5000 + RETENTION, served(True))
    assert gone.remove == [MAIL] and gone.changes_dns and gone.sign == sorted([ED, NEW])


def test_a_key_that_leaves_before_it_ever_signed_is_retired_not_left_behind():
    state = host([MAIL, ED, NEW], [MAIL, ED], {MAIL: T0, ED: T0, NEW: T0})
    plan = decide(spec(("mail",)), state, T0 + 10, served(True))
    assert plan.retire == [NEW] and plan.sign == sorted([MAIL, ED])


def test_dropping_ed25519_stops_its_signature_now_and_keeps_its_record_for_the_retention():
    no_ed25519 = parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                             "mailboxes": [{"address": "a@example.org", "password_hash": HASH}],
                             "dkim": {"ed25519_selectors": []}})
    plan = decide(no_ed25519, host([MAIL, ED], [MAIL, ED], {MAIL: T0, ED: T0}), T0, served(True))
    assert plan.sign == [MAIL] and plan.retire == [ED] and not plan.remove


def test_the_host_state_is_read_from_the_keys_the_live_rspamd_config_and_the_notes(tmp_path):
    keys, state, conf = tmp_path / "keys", tmp_path / "state", tmp_path / "dkim_signing.conf"
    for domain, name in [("example.org", "mail.rsa"), ("example.org", "ed25519.ed25519"), ("example.org", "m2.rsa"),
                         ("example.net", "mail.rsa")]:
        (keys / domain).mkdir(parents=True, exist_ok=True)
        (keys / domain / name).write_text("k")
    (state / "example.org").mkdir(parents=True)
    (state / "example.org" / "m2.rsa.published").write_text("1800000100\n")
    (state / "example.org" / "mail.rsa.retired").write_text("1800000200\n")
    signing = [MAIL, ED, ("example.net", "mail", "rsa")]
    conf.write_text(render(template_path("roles/rspamd/__init__.py", dkim_keys.SIGNING_CONF), keys=signing,
                           key_path=key_path))
    command = (dkim_keys.HOST_DKIM_COMMAND.replace(hostinfo.DKIM_KEY_DIR, str(keys))
               .replace(dkim_keys.STATE_DIR, str(state)).replace(dkim_keys.SIGNING_CONF, str(conf)))
    conf.write_text(conf.read_text().replace(hostinfo.DKIM_KEY_DIR, str(keys)))  # the keys of this tree
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    parsed = HostKeys.parse(out.splitlines())
    assert parsed.keys == {MAIL, ED, NEW, ("example.net", "mail", "rsa")}
    assert parsed.signing == set(signing)
    assert parsed.published == {NEW: 1800000100.0} and parsed.retired == {MAIL: 1800000200.0}


def test_verify_says_where_a_rotation_stands_and_when_the_deploy_has_a_step_to_take():
    from mailhost.verify.checks.host import check_dkim_rotation
    from mailhost.verify.result import Status
    rotated = spec(("m2",))

    def result(state, now):
        (found,) = check_dkim_rotation(rotated, state, now)
        return found.status, found.message

    waiting = host([MAIL, ED, NEW], [MAIL, ED], {MAIL: T0, ED: T0, NEW: T0})
    status, message = result(waiting, T0 + 10)
    assert status is Status.OK and "'m2' was published" in message
    status, message = result(waiting, T0 + TTL)  # the next deploy would switch
    assert status is Status.WARN and "sign with" in message and "'m2'" in message
    done = host([MAIL, ED, NEW], [ED, NEW], {MAIL: T0, ED: T0, NEW: T0}, {MAIL: T0 + TTL})
    assert result(done, T0 + TTL + 10)[0] is Status.OK
    status, message = result(done, T0 + TTL + RETENTION)
    assert status is Status.WARN and "withdraw example.org RSA 'mail'" in message
    settled = host([ED, NEW], [ED, NEW], {ED: T0, NEW: T0})
    assert result(settled, T0 + RETENTION * 2) == (Status.OK, "rspamd signs with the spec's keys: "
                                                             "example.org Ed25519 'ed25519', example.org RSA 'm2'")
