"""The DKIM keys as the host makes and reads them (the same shell commands, run here with this machine's openssl):
a message signed with each key verifies against the record the DNS stage would publish from the host's fact."""

from __future__ import annotations

import base64
import os
import subprocess
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from mailhost import hostinfo
from mailhost.dns.records import HostFacts, dkim as dkim_records, txt_value
from mailhost.spec import Spec, SpecError, parse_spec
from mailhost.verify.checks.host import check_key_files
from mailhost.verify.checks.lookup import LookupTimeout
from mailhost.verify.checks.probe import _DELIVERY_HEADERS, judge_arc, judge_signatures, judge_srs
from mailhost.verify.result import Status
from roles.dkim import _MAKE, AHEAD, AHEAD_RUNNING, make_ahead_command, make_keys_command, public_halves_command


HASH = "{SHA512-CRYPT}$6$rounds=100000$abcdefgh$" + "x" * 86


def make_key(folder, algorithm: str) -> bytes:
    subprocess.run(["sh", "-ec", _MAKE[algorithm]], env={"t": str(folder), "bits": "2048", "PATH": "/usr/bin:/bin"},
                   check=True)
    return (folder / "key").read_bytes()


def host_fact(key_dir) -> dict:
    command = hostinfo.DKIM_PUBLIC_KEYS.replace(hostinfo.DKIM_KEY_DIR, str(key_dir))
    return hostinfo.parse_dkim_public_keys(subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                                          check=True).stdout.splitlines())


def test_each_key_signs_mail_that_verifies_with_the_record_published_from_the_host(tmp_path):
    domain_dir = tmp_path / "keys" / "example.org"
    domain_dir.mkdir(parents=True)
    rsa, ed25519 = make_key(tmp_path, "rsa"), make_key(tmp_path, "ed25519")
    (domain_dir / "mail.rsa").write_bytes(rsa)
    (domain_dir / "ed25519.ed25519").write_bytes(ed25519)
    assert rsa.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert b"\n" not in ed25519 and len(base64.b64decode(ed25519)) == 64  # rspamd's format: seed + public key

    spec = Spec.model_validate({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                                "mailboxes": []})
    facts = HostFacts(dkim_keys=host_fact(tmp_path / "keys"))
    records = {r.name.split(".")[0]: txt_value(next(iter(r.rdatas))) for r in
               dkim_records(spec, spec.domains[0], facts)}
    assert records["mail"].startswith("v=DKIM1; k=rsa; p=MII")
    assert records["ed25519"].startswith("v=DKIM1; k=ed25519; p=") and len(records["ed25519"]) == 66

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.net", "keys"
    message.set_content("made on the host\n")
    raw = message.as_bytes()
    seed = base64.b64encode(base64.b64decode(ed25519)[:32])
    signed = (dkim.sign(raw, b"ed25519", b"example.org", seed, signature_algorithm=b"ed25519-sha256")
              + dkim.sign(raw, b"mail", b"example.org", rsa) + raw)

    def dns(name: bytes, timeout: float = 5) -> bytes:
        return records[name.decode().split(".")[0]].encode()

    verifier = dkim.DKIM(signed)
    assert [verifier.verify(idx=i, dnsfunc=dns) for i in range(2)] == [True, True]
    other = make_key(tmp_path, "ed25519")  # a key the record does not publish fails
    forged = dkim.sign(raw, b"ed25519", b"example.org", base64.b64encode(base64.b64decode(other)[:32]),
                       signature_algorithm=b"ed25519-sha256") + raw
    assert dkim.DKIM(forged).verify(dnsfunc=dns) is False


def run_on(key_dir, command) -> None:
    """A role's command run here against `key_dir` as the key directory (and `<key_dir>-ahead` for the keys made
    ahead), root standing in for rspamd's user."""
    text = str(command if isinstance(command, str) else command.get_raw_value())
    text = text.replace(hostinfo.DKIM_KEY_DIR, str(key_dir)).replace(AHEAD, f"{key_dir}-ahead")
    subprocess.run(["sh", "-c", text.replace(hostinfo.DKIM_KEY_OWNER, "root")], check=True)


def test_made_keys_have_their_public_halves_beside_them_and_older_keys_get_theirs(tmp_path):
    keys_dir = tmp_path / "keys"
    keys = [("example.org", "mail", "rsa"), ("example.org", "ed25519", "ed25519")]
    run_on(keys_dir, make_keys_command(keys, 2048))
    kept = {key: (keys_dir / key[0] / f"{key[1]}.{key[2]}.pub").read_text() for key in keys}
    for key in keys:
        os.remove(keys_dir / key[0] / f"{key[1]}.{key[2]}.pub")
    worked_out = host_fact(keys_dir)  # without the halves kept, from the keys themselves
    assert kept == worked_out and worked_out[keys[0]].startswith("MII") and len(worked_out[keys[1]]) == 44
    run_on(keys_dir, public_halves_command(keys))  # a host whose keys were made before the halves were kept
    assert {key: (keys_dir / key[0] / f"{key[1]}.{key[2]}.pub").read_text() for key in keys} == worked_out


def test_keys_made_ahead_in_the_background_are_the_keys_taken(tmp_path):
    keys_dir, ahead = tmp_path / "keys", tmp_path / "keys-ahead"
    keys = [("example.org", "mail", "rsa"), ("example.org", "ed25519", "ed25519"), ("example.net", "mail", "rsa")]
    run_on(keys_dir, make_ahead_command(keys[:2], 2048))  # returns at once: the job goes on in the background
    run_on(keys_dir, f"timeout 60 sh -c 'while {AHEAD_RUNNING}; do sleep 0.1; done'")
    made = {key: (ahead / key[0] / f"{key[1]}.{key[2]}").read_text() for key in keys[:2]}
    assert all(made.values()) and not (ahead / "example.net").exists()
    run_on(keys_dir, make_keys_command(keys, 2048))  # takes the two made ahead, makes the third
    assert {key: (keys_dir / key[0] / f"{key[1]}.{key[2]}").read_text() for key in keys[:2]} == made
    assert (keys_dir / "example.net" / "mail.rsa").read_text().startswith("-----BEGIN PRIVATE KEY")
    assert host_fact(keys_dir)[keys[0]] == (keys_dir / "example.org" / "mail.rsa.pub").read_text()
    assert not ahead.exists()  # nothing of them is left behind
    other = tmp_path / "other"
    run_on(other, make_ahead_command(keys, 2048))
    run_on(other, make_keys_command(keys, 2048))  # at once: the job still runs, and is waited for
    assert all((other / d / f"{s}.{a}").read_text() for d, s, a in keys) and not (tmp_path / "other-ahead").exists()


def test_the_public_half_kept_is_read_unless_the_key_changed_after_it(tmp_path):
    domain_dir = tmp_path / "keys" / "example.org"
    domain_dir.mkdir(parents=True)
    key, kept = domain_dir / "mail.rsa", domain_dir / "mail.rsa.pub"
    key.write_bytes(make_key(tmp_path, "rsa"))
    real = host_fact(tmp_path / "keys")[("example.org", "mail", "rsa")]
    kept.write_text("KEPT")  # not the key's: shows which one the fact read
    made = key.stat().st_mtime_ns  # (to the nanosecond: a shell may compare them so)
    os.utime(kept, ns=(made, made))
    assert host_fact(tmp_path / "keys") == {("example.org", "mail", "rsa"): "KEPT"}
    os.utime(key, ns=(made + 2 * 10**9, made + 2 * 10**9))  # someone put another key in its place
    assert host_fact(tmp_path / "keys") == {("example.org", "mail", "rsa"): real}


# -- the spec's selectors --------------------------------------------------------------------------------------
def spec_with(dkim: dict | None = None, **domain) -> Spec:
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org", **domain}],
                       "mailboxes": [{"address": "a@example.org", "password_hash": HASH}],
                       **({"dkim": dkim} if dkim is not None else {})})


def test_every_domain_signs_with_rsa_and_ed25519_unless_the_spec_says_otherwise():
    assert spec_with().dkim_keys(spec_with().domains[0]) == [("mail", "rsa"), ("ed25519", "ed25519")]
    only_rsa = spec_with(dkim_ed25519_selectors=[])
    assert only_rsa.dkim_keys(only_rsa.domains[0]) == [("mail", "rsa")]
    renamed = spec_with({"selectors": ["s2026"], "ed25519_selectors": ["e2026"]})
    assert renamed.dkim_keys(renamed.domains[0]) == [("s2026", "rsa"), ("e2026", "ed25519")]


@pytest.mark.parametrize("dkim, domain, path, words", [
    ({"ed25519_selectors": ["mail"]}, {}, "dkim.ed25519_selectors", "'mail' is also an RSA selector"),
    (None, {"dkim_ed25519_selectors": ["x", "x"]}, "domains[0].dkim_ed25519_selectors[1]", "'x' is listed twice"),
    (None, {"dkim_selectors": ["a"], "dkim_ed25519_selectors": ["a"]}, "domains[0].dkim_ed25519_selectors",
     "'a' is also an RSA selector"),
    (None, {"dkim_selectors": []}, "domains[0].dkim_selectors", "Ed25519 needs an RSA selector beside it"),
    ({"selectors": []}, {}, "dkim.selectors", "Ed25519 needs an RSA selector beside it"),
])
def test_a_selector_names_one_key_and_ed25519_never_signs_alone(dkim, domain, path, words):
    with pytest.raises(SpecError) as err:
        spec_with(dkim, **domain)
    assert f"{path}: " in str(err.value) and words in str(err.value), str(err.value)


# -- verify: the probe's signatures and the key files ----------------------------------------------------------
def test_the_probe_needs_a_verifying_signature_by_each_key_of_its_domain(tmp_path):
    rsa, ed25519 = make_key(tmp_path, "rsa"), make_key(tmp_path, "ed25519")
    seed = base64.b64encode(base64.b64decode(ed25519)[:32])
    records = {"mail": "v=DKIM1; k=rsa; p=" + base64.b64encode(
        serialization.load_pem_private_key(rsa, None).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
        "ed25519": "v=DKIM1; k=ed25519; p=" + base64.b64encode(base64.b64decode(ed25519)[32:]).decode()}

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        record = records.get(name.decode().split(".")[0])
        return record.encode() if record else None

    raw = b"From: a@example.org\r\nTo: a@example.org\r\nSubject: probe\r\n\r\nbody\r\n"
    by_rsa = dkim.sign(raw, b"mail", b"example.org", rsa)
    by_ed25519 = dkim.sign(raw, b"ed25519", b"example.org", seed, signature_algorithm=b"ed25519-sha256")
    keys = [("mail", "rsa"), ("ed25519", "ed25519")]

    passing, result = judge_signatures(by_ed25519 + by_rsa + raw, "example.org", keys, dns)
    assert passing and result.status is Status.OK and "RSA 'mail'" in result.message and "Ed25519" in result.message
    passing, result = judge_signatures(by_rsa + raw, "example.org", keys, dns)
    assert passing and result.status is Status.ERROR and "no signature by Ed25519 'ed25519'" in result.message
    records["ed25519"] = records["ed25519"][:-8] + "AAAAAAA="  # another key published
    passing, result = judge_signatures(by_ed25519 + by_rsa + raw, "example.org", keys, dns)
    assert passing and result.status is Status.ERROR and "does not verify" in result.message
    passing, result = judge_signatures(raw, "example.org", keys, dns)
    assert not passing and "not DKIM-signed" in result.message


def test_the_forwarded_probe_needs_a_valid_arc_seal_by_its_domain(tmp_path):
    # As the host's rspamd seals inbound mail (with a key made as on the host), a receiver's Authentication-Results
    # naming what it saw; judged with the key published in DNS.
    rsa = make_key(tmp_path, "rsa")
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(serialization.load_pem_private_key(rsa, None).public_key(
        ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    published = {b"mail._domainkey.example.org.": record, b"mail._domainkey.example.net.": record}

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        value = published.get(name if name.endswith(b".") else name + b".")
        return value.encode() if value else None

    raw = (b"Authentication-Results: mail.example.org; dkim=pass header.d=example.org\r\n"
           b"From: a@example.org\r\nTo: a@example.org\r\nSubject: probe\r\n\r\nbody\r\n")

    def sealed(domain: bytes, message: bytes = raw) -> bytes:
        return b"".join(dkim.arc_sign(message, b"mail", domain, rsa, b"mail.example.org")) + message

    result = judge_arc(sealed(b"example.org"), "example.org", dns)
    assert result.status is Status.OK and "sealed by example.org" in result.message, result
    assert judge_arc(raw, "example.org", dns).status is Status.ERROR
    other = judge_arc(sealed(b"example.net"), "example.org", dns)
    assert other.status is Status.ERROR and "by example.net, not example.org" in other.message
    tampered = sealed(b"example.org").replace(b"body", b"b0dy")
    broken = judge_arc(tampered, "example.org", dns)
    assert broken.status is Status.ERROR and "does not validate" in broken.message, broken
    published.clear()  # the key withdrawn from DNS
    assert judge_arc(sealed(b"example.org"), "example.org", dns).status is Status.ERROR

    def slow(name: bytes, timeout: float = 5) -> bytes | None:
        raise LookupTimeout(name.decode())
    assert judge_arc(sealed(b"example.org"), "example.org", slow).status is Status.TIMEOUT


def test_the_forwarded_probe_goes_on_with_an_srs_sender_of_the_srs_domain():
    def delivered(return_path: str) -> bytes:
        return f"Return-Path: {return_path}\r\nFrom: a@example.org\r\nSubject: probe\r\n\r\nbody\r\n".encode()

    srs = "<SRS0=HHH=TT=outside.invalid=probe@example.org>"  # postsrsd's form, '=' as separator
    result = judge_srs(delivered(srs), "probe@outside.invalid", "example.org")
    assert result.status is Status.OK and "SRS0=HHH=TT=...@example.org" in result.message, result
    for wrong in ("<probe@outside.invalid>",  # not rewritten
                  "<SRS0=HHH=TT=outside.invalid=probe@example.net>",  # another SRS domain
                  "<SRS0=HHH=TT=elsewhere.invalid=someone@example.org>", "<>"):
        result = judge_srs(delivered(wrong), "probe@outside.invalid", "example.org")
        assert result.status is Status.ERROR and wrong.strip("<>") in result.message, (wrong, result)
    assert judge_srs(b"From: a@example.org\r\n\r\nbody\r\n", "probe@outside.invalid", "example.org").status \
        is Status.ERROR


def test_a_forwarder_sends_the_probe_without_the_headers_of_its_delivery():
    delivered = (b"Return-Path: <a@example.org>\r\nDelivered-To: a@example.org\r\nReceived: from x\r\n\tby y\r\n"
                 b"DKIM-Signature: v=1;\r\n b=abc\r\nFrom: a@example.org\r\n\r\nReturn-Path: stays in the body\r\n")
    assert _DELIVERY_HEADERS.sub(b"", delivered) == b"Received:" + delivered.split(b"Received:", 1)[1]


def test_key_files_must_be_there_and_private_to_rspamd():
    spec = spec_with()
    mail, ed = (hostinfo.dkim_key_path("example.org", s, a) for s, a in spec.dkim_keys(spec.domains[0]))
    assert list(check_key_files(lambda _: f"600 _rspamd {mail}\n600 _rspamd {ed}\n", spec))[0].status is Status.OK
    (result,) = list(check_key_files(lambda _: f"644 _rspamd {mail}\n", spec))
    assert result.status is Status.ERROR and f"missing: {ed}" in result.message and f"{mail} (644 _rspamd)" in result.message
