"""The systemd units the roles run, and the one operation that keeps each running (or stopped), enabled at boot
(or not), restarted or reloaded when its config changed.

pyinfra's `systemd.service` reads two facts per call (is it running, is it enabled), each a round trip: 22 of
a no-op run's 67. Here one `systemctl show` reads every unit of `UNITS`, once per run (`roles._facts`).
"""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand, operation

from mailhost.hostinfo import MTA_STS_SOCKET
from roles._facts import read_once

# Every unit a role manages (a name not here is a programming error).
UNITS = ("certbot.timer", "dovecot.service", "fail2ban.service", "nftables.service", "nginx.service",
         "postfix.service", "postsrsd.service", "redis-server.service", "rspamd.service",
         "systemd-timesyncd.service", "unbound.service", "postfix-mta-sts-resolver.service",
         MTA_STS_SOCKET)
RUNNING = {"active", "reloading"}  # ActiveState: a waiting timer and an exited oneshot (nftables) are active
ENABLED = {"enabled", "static"}  # UnitFileState


class UnitStates(FactBase):
    """{unit: (running, enabled at boot)} for the units named; a unit that is not installed is neither."""

    requires_command = "systemctl"
    default = dict

    def command(self, units: tuple[str, ...]) -> StringCommand:
        return StringCommand("systemctl", "show", "--property=Id,ActiveState,UnitFileState",
                             *(QuoteString(u) for u in units))

    def process(self, output: list[str]) -> dict[str, tuple[bool, bool]]:
        states: dict[str, tuple[bool, bool]] = {}
        blocks: list[dict[str, str]] = [{}]
        for line in output:  # a block per unit, a blank line between them (or none, if the lines come without)
            key, _, value = line.strip().partition("=")
            if not key or key in blocks[-1]:
                blocks.append({})
            if key:
                blocks[-1][key] = value
        for fields in blocks:
            if fields.get("Id"):
                states[fields["Id"]] = (fields.get("ActiveState") in RUNNING, fields.get("UnitFileState") in ENABLED)
        return states


def enable_command(service: str) -> StringCommand:
    """Enable `service` at boot unless it is (`ENABLED`) by now."""
    states = "|".join(sorted(ENABLED))
    return StringCommand("case $(systemctl is-enabled", QuoteString(service), f"2>/dev/null) in {states}) ;;",
                         "*) systemctl enable --no-reload", QuoteString(service), ";; esac")


@operation()
def unit(service: str, running: bool | None = True, enabled: bool | None = None, restarted: bool = False,
         reloaded: bool = False):
    """As `systemd.service` (start or stop; restart or reload only a running unit; then enable or disable),
    on the state read once. Enabling skips systemd's daemon-reload (`--no-reload`): the unit is loaded
    already and only its boot symlink is missing, and that reload costs over a second on Debian 12. A unit
    its package enabled during this run is not enabled again: on Debian 12 that runs the SysV init script's
    `update-rc.d` too (about a second for unbound, Dovecot, Fail2Ban each on a fresh host)."""
    if service not in UNITS:
        raise ValueError(f"{service} is not in roles._units.UNITS")
    is_running, is_enabled = read_once(UnitStates, units=UNITS).get(service, (False, False))
    if running is True and not is_running:
        yield StringCommand("systemctl", "start", QuoteString(service))
    elif running is False and is_running:
        yield StringCommand("systemctl", "stop", QuoteString(service))
    if is_running and (restarted or reloaded):
        yield StringCommand("systemctl", "restart" if restarted else "reload", QuoteString(service))
    if enabled is True and not is_enabled:  # (as read before the run: a package's install may have enabled it since)
        yield enable_command(service)
    elif enabled is False and is_enabled:
        yield StringCommand("systemctl", "disable", "--no-reload", QuoteString(service))
