"""Postfix: 25 inbound (STARTTLS, postscreen), 587 submission (STARTTLS + AUTH required), 465 submissions
(implicit TLS); SASL through Dovecot, virtual domains delivered to Dovecot over LMTP, sender spoof
protection, OpenDKIM signing of submitted mail and rspamd on everything."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from mailhost import maps
from mailhost.spec import Spec
from roles._config import StagedConfig, config_file
from roles.certbot import live_dir


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["postfix"]


MAPS = {
    "/etc/postfix/virtual_mailboxes": maps.virtual_mailboxes,
    "/etc/postfix/virtual_aliases": maps.virtual_aliases,
    "/etc/postfix/sender_logins": maps.sender_logins,
}


@deploy("postfix")
def apply(spec: Spec) -> None:
    changed = []
    for path, rows in MAPS.items():
        table = config_file(__file__, path, rows=rows(spec))
        # Rebuilt only when the table changed.
        server.shell(name=f"postmap {path}", commands=[f"postmap hash:{path}"], _if=table.did_change)
        changed.append(table)
    # Both files staged first: postconf checks them together.
    main = StagedConfig(__file__, "/etc/postfix/main.cf", spec=spec, tls=live_dir(spec), backdated=True)
    master = StagedConfig(__file__, "/etc/postfix/master.cf", spec=spec)
    check = ("{{ postconf -c {dir} -n; postconf -c {dir} -M; }} >/dev/null 2>{dir}/check.err; "
             "! grep -i -e warning -e fatal {dir}/check.err")
    changed += [main.install(check), master.install(check)]
    server.shell(name="Postfix installation is consistent", commands=["postfix check"], _if=any_changed(*changed))
    systemd.service(name="Postfix reloads its config", service="postfix", reloaded=True,
                    _if=any_changed(*changed))  # only if running; a stopped Postfix starts below
    systemd.service(name="Postfix is running", service="postfix", running=True, enabled=True)
