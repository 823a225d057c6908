"""Fail2Ban: bans sources of repeated failed logins (SSH; IMAP, POP3, ManageSieve and SMTP AUTH), reading
the journal (minimal Debian has no auth.log) and banning through nftables. Each failed login counts once
(mailhost's own filters: Debian's stock ones count some attempts twice and miss Dovecot 2.4's lines), and
the address the deploy comes from is never banned."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from mailhost.services import services_on
from mailhost.spec import Spec
from roles._config import config_file
from roles._connection import SshClientAddress
from roles._facts import read_once
from roles._units import unit

FILTERS = ["mailhost-sshd", "mailhost-logins"]


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["fail2ban", "python3-systemd", "whois"]


@deploy("fail2ban")
def apply(spec: Spec) -> None:
    if not spec.fail2ban.enabled:
        unit(name="Fail2Ban is off", service="fail2ban.service", running=False, enabled=False)
        return
    changed = [config_file(__file__, f"/etc/fail2ban/filter.d/{name}.conf") for name in FILTERS]
    login_ports = [s.port for s in services_on(spec.features) if s.login]
    changed.append(config_file(__file__, "/etc/fail2ban/jail.d/mailhost.local", spec=spec, login_ports=login_ports,
                               deployer=read_once(SshClientAddress)))
    server.shell(name="Fail2Ban config is valid", commands=["fail2ban-client -t"], _if=any_changed(*changed))
    unit(name="Fail2Ban restarts for new jails", service="fail2ban.service", restarted=True,
         _if=any_changed(*changed))  # only if running; a stopped Fail2Ban starts below
    unit(name="Fail2Ban is running", service="fail2ban.service", running=True, enabled=True)
