"""Hostile and malformed specs, generated (Hypothesis): the loader either refuses a spec with a short
SpecError or accepts it, and an accepted spec renders every table and config file without a stray line,
a control character or a split value.

Each CI run tries a few hundred specs; `benchmarks/spec_fuzz.py` runs the same properties with 10,000+.
"""

from __future__ import annotations

import os
import subprocess
import re
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mailhost import maps
from mailhost.services import services_on
from mailhost.spec import SpecError, parse_spec
from roles._config import render as render_template, template_path
from roles.dkim import key_path, signing_keys
from tests.hostile_specs import PATHS, SECRET, SECRET_FIELDS, mutated, values

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("MAILHOST_FUZZ_EXAMPLES", "300"))



def render(role: str, dest: str, **context) -> str:
    return render_template(template_path(str(REPO / "roles" / role / "__init__.py"), dest), **context)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def assert_renders_cleanly(spec) -> None:
    """Every table has one line per row, every line holds no control character, each value whole."""
    for name in ("virtual_mailboxes", "virtual_aliases", "sender_logins"):
        rows = getattr(maps, name)(spec)
        rendered = lines(render("postfix", f"/etc/postfix/{name}", rows=rows))
        assert rendered == [f"{key} {value}" for key, value in rows]
        assert all(len(line.split(" ")) == 2 for line in rendered)
    for v24 in (False, True):
        users = maps.dovecot_users(spec)
        rendered = lines(render("dovecot", "/etc/dovecot/users", users=users, v24=v24))
        assert len(rendered) == len(users)
        assert all(line.split(":")[:3] == [address, password_hash, ""]  # fields stay in place
                   for line, (address, password_hash, _) in zip(rendered, users))
    keys = signing_keys(spec)
    rendered = lines(render("rspamd", "/etc/rspamd/local.d/dkim_signing.conf", keys=keys, key_path=key_path))
    assert [line.strip() for line in rendered if "selector =" in line] == [
        f'{{ selector = "{s}"; path = "{key_path(d, s, a)}"; }},' for d, s, a in keys]
    texts = [render("postfix", "/etc/postfix/main.cf", spec=spec, tls="/etc/letsencrypt/live/" + spec.hostname),
             render("fail2ban", "/etc/fail2ban/jail.d/mailhost.local", spec=spec, deployer="192.0.2.99",
                    login_ports=[s.port for s in services_on(spec.features) if s.login]),
             render("firewall", "/etc/nftables.conf", spec=spec, tcp_ports=spec.mail_tcp_ports,
                    ssh_sources=list(spec.firewall.ssh_sources))]
    if spec.srs_domain:
        texts.append(render("postsrsd", "/etc/default/postsrsd", spec=spec))
        assert subprocess.run(["sh", "-n"], input=texts[-1], text=True).returncode == 0, texts[-1]
    for text in texts:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    assert f"myhostname = {spec.hostname}\n" in texts[0]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_a_hostile_spec_is_refused_clearly_or_renders_cleanly(changes):
    data = mutated(changes)
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        event("refused")
        message = str(exc)
        assert len(message) < 400 * (len(exc.problems) + 1), message
        # A secret field's value is never shown (the same text given to a field that is not secret, a host
        # name, is that field's value, and is named).
        if any(path in SECRET_FIELDS and SECRET in str(value) for path, value in changes) and not any(
                path not in SECRET_FIELDS and SECRET in str(value) for path, value in changes):
            assert SECRET not in message, message
        return
    event("accepted")
    assert_renders_cleanly(spec)
