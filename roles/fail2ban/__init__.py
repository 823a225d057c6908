"""Fail2Ban: bans sources of repeated failed logins (SSH, Postfix SASL, Dovecot), reading the journal
(minimal Debian has no auth.log) and banning through nftables."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from mailhost.spec import Spec
from roles._config import config_file


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["fail2ban", "python3-systemd", "whois"]


@deploy("fail2ban")
def apply(spec: Spec) -> None:
    if not spec.fail2ban.enabled:
        systemd.service(name="Fail2Ban is off", service="fail2ban", running=False, enabled=False)
        return
    jail = config_file(__file__, "/etc/fail2ban/jail.d/mailhost.local", spec=spec)
    server.shell(name="Fail2Ban config is valid", commands=["fail2ban-client -t"], _if=jail.did_change)
    systemd.service(name="Fail2Ban restarts for new jails", service="fail2ban", restarted=True,
                    _if=any_changed(jail))  # only if running; a stopped Fail2Ban starts below
    systemd.service(name="Fail2Ban is running", service="fail2ban", running=True, enabled=True)
