"""Spec values that reach a shell on the host arrive there as single, literal arguments (pyinfra's quoting),
whatever they hold: a hostile value cannot run a command even if it got past validation."""

from __future__ import annotations

import shlex
import subprocess
import types

from roles.certbot import AGAIN, RETRY_PAUSE, STATE, ready_command, request_command
from roles.dkim import make_ahead_command, make_keys_command

HOSTILE = ["`touch /tmp/pwned`", "$(id)", "a;reboot;#", "x' || true '", "line\nbreak", "two words"]


def spec_with(hostname: str, contact: str, directory: str, ca_bundle: str | None = None):
    return types.SimpleNamespace(hostname=hostname, acme_contact=contact,
                                 tls=types.SimpleNamespace(acme_directory=directory, ca_bundle=ca_bundle))


def tokens(command) -> list[str]:
    """The words and operators a POSIX shell sees in a command (or in a string: what `sh -c` is given)."""
    lexer = shlex.shlex(command if isinstance(command, str) else command.get_raw_value(), posix=True,
                        punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def commands(words: list[str]) -> list[list[str]]:
    """A list of words cut at each `&&`: the commands of an and-list."""
    found: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            found.append([])
        else:
            found[-1].append(word)
    return found


def after(argv: list[str], option: str) -> list[str]:
    """Every value given to `option` in argv, in order."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


def test_certbot_gets_each_spec_value_as_one_argument():
    """The background job is one `sh -c` word (quoted by pyinfra) whose own words, as that shell splits them
    again, hold each spec value whole: the host name, a web name, the contact and the directory."""
    for value, ca_bundle in [(value, ca) for value in HOSTILE for ca in (None, "ca.pem")]:
        spec = spec_with(f"mail{value}", f"{value}@example.org", f"https://ca/{value}", ca_bundle)
        certificates = {f"mail{value}": [f"mail{value}"],
                        f"mail{value}-web-1": [f"mta-sts.ex{value}.org", f"autoconfig.ex{value}.org"]}
        words = tokens(request_command(spec, certificates))
        start = words.index("setsid") + 1
        argv = words[start:words.index(">", start)]
        assert argv[:2] == ["sh", "-c"] and len(argv) == 3, argv  # the whole job is one word
        words, again = tokens(argv[2]), tokens(AGAIN)
        assert words[:len(again)] == again  # the job defines its retry first
        job = commands(words[len(again):])
        if ca_bundle:  # the private CA is trusted first, in the same job
            assert job[0] == ["update-ca-certificates", ">", "/dev/null"]
            job = job[1:]
        assert job[-1] == ["true"] and len(job) == len(certificates) + 1
        for step, (name, domains) in zip(job, certificates.items()):
            assert step[:3] == ["again", "certbot", "certonly"]
            certbot = step[1:]
            assert after(certbot, "--server") == [f"https://ca/{value}"]
            assert after(certbot, "-m") == [f"{value}@example.org"]
            assert after(certbot, "--cert-name") == [name]
            assert after(certbot, "-d") == domains
            # Nothing else carries a piece of the value: it is in exactly the words expected, whole.
            assert [w for w in certbot if value in w] == [f"https://ca/{value}", f"{value}@example.org", name,
                                                          *domains]
        waited = tokens(ready_command(spec, certificates))
        files = waited[waited.index("test") + 1:waited.index("||")]
        assert files == ["-s", f"/etc/letsencrypt/live/mail{value}/fullchain.pem", "-a",
                         "-s", f"/etc/letsencrypt/live/mail{value}-web-1/fullchain.pem"]
        # Waiting for some of them while the job goes on: the loop's test gets the same words, one level down.
        partial = tokens(ready_command(spec, certificates, whole=False))
        assert partial[:3] == ["timeout", "900", "sh"] and partial[3] == "-c"
        loop = tokens(partial[4])
        assert loop[loop.index("!") + 1:loop.index(";")] == ["test", *files]
        assert partial[partial.index("test", 5) + 1:partial.index("||")] == files


def test_a_failed_issuance_names_the_missing_certificates_only(tmp_path):
    """The hint after certbot's words names each certificate that is not there, with its first few names, and not
    the ones that are (with 100 domains, a list of every name hid which certificate failed, and certbot's words
    with it). Run by a real shell, with the paths moved under tmp_path."""
    spec = spec_with("mail.example.org", "postmaster@example.org", "https://ca/dir")
    certificates = {"mail.example.org": ["mail.example.org"],
                    "mail.example.org-web-1": [f"{web}.d{n}.example.org" for n in range(50)
                                               for web in ("mta-sts", "autoconfig")]}
    (tmp_path / "live/mail.example.org").mkdir(parents=True)
    (tmp_path / "live/mail.example.org/fullchain.pem").write_text("a chain\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state/certbot.log").write_text("Some challenges have failed.\n")
    for whole in (True, False):
        text = (ready_command(spec, certificates, whole=whole).get_raw_value()
                .replace("/etc/letsencrypt/live/", f"{tmp_path}/live/").replace(STATE, f"{tmp_path}/state"))
        done = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=10)
        assert done.returncode == 1, done
        assert "Some challenges have failed." in done.stderr
        assert ("ACME: no certificate mail.example.org-web-1 for mta-sts.d0.example.org, autoconfig.d0.example.org, "
                "mta-sts.d1.example.org, autoconfig.d1.example.org and 96 more\n") in done.stderr
        assert "no certificate mail.example.org for" not in done.stderr
    (tmp_path / "live/mail.example.org-web-1").mkdir()
    (tmp_path / "live/mail.example.org-web-1/fullchain.pem").write_text("a chain\n")
    done = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and done.stderr == "", done


def test_a_failed_issuance_is_asked_for_once_more_and_a_second_failure_ends_the_job(tmp_path):
    """Run by a real shell, with a `certbot` that fails as told: a certificate whose first try fails gets one
    more, after the pause, with the very same arguments (hostile values too); one that fails twice ends the job
    and the certificates after it are not asked for."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    # The fake certbot notes its arguments (NUL-separated, a line per call) and fails while the certificate
    # named after --cert-name still has failures left in fail/<name> (a count).
    (bin_dir / "certbot").write_text(f"""#!/bin/sh
printf '%s\\0' "$@" >> {calls}; echo >> {calls}
while [ "$1" != --cert-name ]; do shift; done
left=$(cat "{tmp_path}/fail/$2" 2>/dev/null || echo 0)
[ "$left" -gt 0 ] && {{ echo $((left - 1)) > "{tmp_path}/fail/$2"; exit 1; }}
exit 0
""")
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "sleep $*" >> {tmp_path}/slept\n')
    for tool in ("certbot", "sleep"):
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "fail").mkdir()
    value = HOSTILE[3]
    spec = spec_with(f"mail{value}", "postmaster@example.org", "https://ca/dir")
    certificates = {"transient": ["mail.example.org"], "broken": [f"mta-sts.ex{value}.org"], "later": ["x.org"]}
    (tmp_path / "fail/transient").write_text("1")
    (tmp_path / "fail/broken").write_text("5")
    words = tokens(request_command(spec, certificates))
    job = words[words.index("setsid") + 3]
    done = subprocess.run(["sh", "-c", job], capture_output=True, text=True, timeout=10,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode != 0, done
    made = [line.split("\0")[:-1] for line in calls.read_text().splitlines()]
    names = [argv[argv.index("--cert-name") + 1] for argv in made]
    assert names == ["transient", "transient", "broken", "broken"]  # "later" never asked for
    assert made[2] == made[3] and after(made[3], "-d") == [f"mta-sts.ex{value}.org"]
    assert (tmp_path / "slept").read_text() == f"sleep {RETRY_PAUSE}\n" * 2
    assert done.stdout.count("asking once more") == 2


def jobs_start(words: list[str]) -> int:
    """Where the key jobs' list starts in a DKIM command: after `for job in`."""
    return next(i for i in range(len(words)) if words[i:i + 3] == ["for", "job", "in"]) + 3


def test_dkim_key_jobs_are_quoted_words():
    for value in HOSTILE:
        words = tokens(make_keys_command([("example.org", "mail", "rsa"), (f"ex{value}.org", "s", "ed25519")], 2048))
        start = jobs_start(words)
        assert words[start:words.index(";", start)] == ["example.org/mail/rsa", f"ex{value}.org/s/ed25519"]
        outer = tokens(make_ahead_command([("example.org", "mail", "rsa"), (f"ex{value}.org", "s", "ed25519")], 2048))
        words = tokens(outer[outer.index("-c") + 1])  # the background job, as `sh -c` gets it
        start = jobs_start(words)
        assert words[start:words.index(";", start)] == ["example.org/mail/rsa", f"ex{value}.org/s/ed25519"]


def test_key_rollover_commands_get_the_slot_names_as_single_arguments():
    from mailhost import rollover
    from roles.certbot import mark_command, rekey_command, switch_command
    for value in HOSTILE:
        spec = types.SimpleNamespace(hostname=f"mail{value}", tls=types.SimpleNamespace(key_generation=3),
                                     certificate_slots=(f"mail{value}", f"mail{value}-b"))
        first, second = rollover.slots(spec)
        words = tokens(switch_command(spec, rollover.HostTls(first, 2, None)))
        assert words[words.index("-sfn") + 1] == f"/etc/letsencrypt/live/{second}"
        assert words[words.index(rollover.REKEY_FILE) - 2:words.index(rollover.REKEY_FILE)] == [first, ">"]
        words = tokens(rekey_command(second))
        assert words[words.index("--cert-name") + 1] == second and "--new-key" in words
        words = tokens(mark_command(first))
        assert f"/etc/letsencrypt/live/{first}/privkey.pem" in words


def test_the_wait_for_rspamd_is_one_valid_command_naming_each_listener():
    from mailhost import hostinfo
    for controller in (False, True):
        command = hostinfo.rspamd_answers(controller, seconds=5)
        assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0
        assert (hostinfo.RSPAMD_CONTROLLER in command) is controller and hostinfo.RSPAMD_MILTER in command
        assert tokens(command)[:2] == ["timeout", "5"]


def test_a_placeholder_is_written_where_missing_and_an_existing_file_left_alone(tmp_path):
    from roles.base import placeholder_command
    from roles.postfix import PLACEHOLDERS

    text = PLACEHOLDERS["/etc/postfix/main.cf"]
    made, kept = tmp_path / "new dir" / "main.cf", tmp_path / "main.cf"
    kept.write_text("myhostname = mine\n")
    for path in (made, kept):
        subprocess.run(["sh", "-c", placeholder_command(str(path), text).get_raw_value()], check=True)
    assert made.read_text() == text
    assert kept.read_text() == "myhostname = mine\n"
