"""Spec values that reach a shell on the host arrive there as single, literal arguments (pyinfra's quoting),
whatever they hold: a hostile value cannot run a command even if it got past validation."""

from __future__ import annotations

import shlex
import types

from roles.certbot import ready_command, request_command
from roles.opendkim import make_keys_command

HOSTILE = ["`touch /tmp/pwned`", "$(id)", "a;reboot;#", "x' || true '", "line\nbreak", "two words"]


def spec_with(hostname: str, contact: str, directory: str, ca_bundle: str | None = None):
    return types.SimpleNamespace(hostname=hostname, acme_contact=contact,
                                 tls=types.SimpleNamespace(acme_directory=directory, ca_bundle=ca_bundle))


def tokens(command) -> list[str]:
    """The words and operators a POSIX shell sees."""
    lexer = shlex.shlex(command.get_raw_value(), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def test_certbot_gets_each_spec_value_as_one_argument():
    for value, ca_bundle in [(value, ca) for value in HOSTILE for ca in (None, "ca.pem")]:
        spec = spec_with(f"mail{value}", f"{value}@example.org", f"https://ca/{value}", ca_bundle)
        words = tokens(request_command(spec))
        start = words.index("setsid") + 1
        argv = words[start:words.index(">", start)]
        if ca_bundle:  # the private CA is trusted first, then certbot runs with its arguments as they were
            assert argv[:4] == ["sh", "-c", 'update-ca-certificates >/dev/null && exec "$@"', "sh"]
            argv = argv[4:]
        assert argv[:2] == ["certbot", "certonly"]
        assert argv[argv.index("--server") + 1] == f"https://ca/{value}"
        assert argv[argv.index("-m") + 1] == f"{value}@example.org"
        assert argv[argv.index("-d") + 1] == argv[argv.index("--cert-name") + 1] == f"mail{value}"
        waited = tokens(ready_command(spec))
        assert waited[waited.index("-s") + 1] == f"/etc/letsencrypt/live/mail{value}/fullchain.pem"


def test_dkim_key_jobs_are_quoted_words():
    for value in HOSTILE:
        words = tokens(make_keys_command([("example.org", "mail"), (f"ex{value}.org", "s")], 2048))
        start = words.index("in") + 1
        assert words[start:words.index(";", start)] == ["example.org/mail", f"ex{value}.org/s"]
