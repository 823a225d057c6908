"""What only the host knows: services running, firewall, Fail2Ban jails, key files, renewal timer.

The host is reached through a `Run` function (a shell command -> its output), so the same checks run
over plain SSH (`mailhost verify`) and inside a pyinfra deploy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from mailhost.services import JAILS, services_on
from mailhost.spec import Spec

from ..result import Result, error, ok, warn

Run = Callable[[str], str]
SERVICES = ["postfix", "dovecot", "rspamd", "redis-server", "opendkim", "fail2ban", "nftables"]


def check_services(run: Run, hostname: str) -> Iterable[Result]:
    states = dict(zip(SERVICES, run("systemctl is-active " + " ".join(SERVICES) + " || true").split()))
    down = [s for s in SERVICES if states.get(s) != "active"]
    if down:
        yield error("host.services", hostname, "not running: " + ", ".join(f"{s} ({states.get(s, '?')})" for s in down),
                    "run the deploy again (it starts them); `journalctl -u <service>` on the host says why")
    else:
        yield ok("host.services", hostname, f"all {len(SERVICES)} services active")
    timer = run("systemctl is-enabled certbot.timer 2>/dev/null; systemctl is-active certbot.timer 2>/dev/null; true")
    if timer.split() != ["enabled", "active"]:
        yield error("host.renewal", hostname, "the certificate renewal timer (certbot.timer) is not enabled and active",
                    "run the deploy again")
    else:
        yield ok("host.renewal", hostname, "certificate renewal timer active")


def check_fail2ban(run: Run, spec: Spec) -> Iterable[Result]:
    if not spec.fail2ban.enabled:
        return
    out = run("fail2ban-client status 2>&1 || true")
    line = next((ln for ln in out.splitlines() if "Jail list:" in ln), "")
    jails = {j.strip() for j in line.split(":", 1)[-1].split(",") if j.strip()}
    missing = set(JAILS) - jails
    if missing:
        yield error("host.fail2ban", spec.hostname, f"jails not loaded: {', '.join(sorted(missing))}",
                    "run the deploy again; `fail2ban-client -t` on the host shows config errors")
    else:
        yield ok("host.fail2ban", spec.hostname, f"jails loaded: {', '.join(sorted(jails))}")


def check_key_files(run: Run, spec: Spec) -> Iterable[Result]:
    out = run("stat -c '%a %U %n' /etc/opendkim/keys/*/*.private 2>/dev/null || true")
    bad = [line for line in out.splitlines() if not line.startswith("600 opendkim ")]
    if bad or not out.strip():
        yield error("host.keys", spec.hostname, "DKIM private keys with wrong mode/owner or missing: "
                    + ("; ".join(bad) or "no key files"), "run the deploy again (mode 600, owner opendkim)")
    else:
        yield ok("host.keys", spec.hostname, f"{len(out.splitlines())} DKIM private key(s), mode 600, owner opendkim")


def check_open_ports(run: Run, spec: Spec, address: str, timeout: float = 3.0) -> Iterable[Result]:
    """Every port listening on a public address and reachable from here must be one the spec declares."""
    declared = set(spec.open_tcp_ports)
    listening = set()
    for line in run("ss -Hltn").splitlines():
        local = line.split()[3] if len(line.split()) > 3 else ""
        host, _, port = local.rpartition(":")
        if port.isdigit() and not host.startswith(("127.", "[::1]", "[::ffff:127.")):
            listening.add(int(port))
    exposed = []
    for port in sorted(listening - declared):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                exposed.append(port)
        except OSError:
            pass  # filtered by the firewall, as it should be
    if exposed:
        yield error("host.firewall", spec.hostname, f"reachable but not declared: tcp {', '.join(map(str, exposed))}",
                    "run the deploy again (it restores the firewall), or declare the port in firewall.allow")
    else:
        closed = sorted(listening - declared)
        yield ok("host.firewall", spec.hostname, "only declared ports are reachable"
                 + (f" (listening but filtered: {', '.join(map(str, closed))})" if closed else ""))
    unreachable = []
    for port in sorted(declared & {service.port for service in services_on(spec.features) if service.tls}):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                pass
        except OSError:
            unreachable.append(port)
    if unreachable:
        yield warn("host.firewall", f"{spec.hostname}:{','.join(map(str, unreachable))}",
                   f"declared but not reachable from here: tcp {', '.join(map(str, unreachable))}",
                   "check the firewall and the provider's network filters")
