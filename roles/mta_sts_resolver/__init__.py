"""Receivers' MTA-STS policies (RFC 8461) for Postfix's smtp_tls_policy_maps: Debian's postfix-mta-sts-resolver,
running only while Postfix asks.

The resolver is Python with aiohttp, ~40 MB resident: a fifth of the stack's idle memory for a process that
answers a question per outbound delivery. So systemd holds its socket (`hostinfo.MTA_STS_PORT`, where Postfix
asks); the first question starts the resolver (it tells systemd when it listens) and a `systemd-socket-proxyd`
that passes the question on; a minute after the last question both end. The policies it learnt stay in its
SQLite cache, so a restart forgets none (MTA-STS protects only a sender that remembers a receiver's policy).
The cost: the first outbound delivery after an idle minute waits about a second for the resolver to start.

Only where the spec honours receivers' policies (`features.mta_sts_outbound`); on a host that stopped, removed.
"""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from mailhost import hostinfo
from mailhost.spec import Spec
from roles._config import config_file
from roles._facts import read_once
from roles._units import UNITS, UnitStates, unit

PACKAGE = "postfix-mta-sts-resolver"
RESOLVER = f"{PACKAGE}.service"  # Debian's unit, started by the proxy's dependency only
SOCKET, PROXY = hostinfo.MTA_STS_SOCKET, "mailhost-mta-sts.service"
UNIT_FILES = [f"/etc/systemd/system/{SOCKET}", f"/etc/systemd/system/{PROXY}",
              f"/etc/systemd/system/{RESOLVER}.d/mailhost.conf"]


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return [PACKAGE] if spec.features.mta_sts_outbound else []


@deploy("MTA-STS resolver")
def apply(spec: Spec) -> None:
    if not spec.features.mta_sts_outbound:
        unit(name="Postfix's MTA-STS socket is closed", service=SOCKET, running=False, enabled=False)
        apt.packages(name="MTA-STS resolver is not installed", packages=[PACKAGE], present=False, purge=True)
        removed = [files.file(name=f"{path} is gone", path=path, present=False) for path in UNIT_FILES]
        systemd.daemon_reload(name="systemd forgets the MTA-STS socket", _if=any_changed(*removed))
        return
    config = config_file(__file__, "/etc/mta-sts-daemon.yml")
    units = [config_file(__file__, path) for path in UNIT_FILES]
    systemd.daemon_reload(name="systemd reads the MTA-STS socket and units", _if=any_changed(*units))
    # Enabled and started by the package's install on Postfix's port, or running with a config or units that
    # changed: stopped, so the next question starts it anew, as the socket's. (Unconditionally: the state read
    # before the run is from before the install.)
    server.shell(name="MTA-STS resolver stops, not started at boot (the next question starts it anew)",
                 commands=[f"systemctl disable --no-reload --now {RESOLVER}"], _if=any_changed(config, *units))
    unit(name="MTA-STS resolver is not started at boot (Postfix's questions start it)", service=RESOLVER,
         running=None, enabled=False)
    unit(name="Postfix's MTA-STS socket listens anew", service=SOCKET, restarted=True, _if=units[0].did_change)
    if not read_once(UnitStates, units=UNITS).get(SOCKET, (False, False))[0]:
        # A socket whose resolver would not start gives up for good ("trigger limit hit"), and systemd refuses the
        # resolver for a while ("start request repeated too quickly"): both may start again.
        server.shell(name="MTA-STS socket and resolver may start again",
                     commands=[f"systemctl reset-failed {RESOLVER} {PROXY} {SOCKET} 2>/dev/null || true"])
    unit(name="Postfix's MTA-STS socket listens", service=SOCKET, running=True, enabled=True)
