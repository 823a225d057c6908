"""Spec values that reach a shell on the host arrive there as single, literal arguments (pyinfra's quoting),
whatever they hold: a hostile value cannot run a command even if it got past validation."""

from __future__ import annotations

import shlex
import types

from roles.certbot import certonly_command
from roles.opendkim import make_keys_command

HOSTILE = ["`touch /tmp/pwned`", "$(id)", "a;reboot;#", "x' || true '", "line\nbreak", "two words"]


def spec_with(hostname: str, contact: str, directory: str):
    return types.SimpleNamespace(hostname=hostname, acme_contact=contact,
                                 tls=types.SimpleNamespace(acme_directory=directory))


def test_certbot_gets_each_spec_value_as_one_argument():
    for value in HOSTILE:
        command = certonly_command(spec_with(f"mail{value}", f"{value}@example.org", f"https://ca/{value}"))
        lexer = shlex.shlex(command.get_raw_value(), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        argv = tokens[:tokens.index("||")]
        assert argv[argv.index("--server") + 1] == f"https://ca/{value}"
        assert argv[argv.index("-m") + 1] == f"{value}@example.org"
        assert argv[argv.index("-d") + 1] == argv[argv.index("--cert-name") + 1] == f"mail{value}"


def test_dkim_key_jobs_are_quoted_words():
    for value in HOSTILE:
        raw = make_keys_command([("example.org", "mail"), (f"ex{value}.org", "s")], 2048).get_raw_value()
        lexer = shlex.shlex(raw, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        start = tokens.index("in") + 1
        assert tokens[start:tokens.index(";", start)] == ["example.org/mail", f"ex{value}.org/s"]
