"""Firewall: nftables, default-deny inbound; SSH (never lock the operator out), mail, ACME and enabled features.

Only mailhost's own table (`inet mailhost`) is managed, replaced atomically on reload, so other tables
(Fail2Ban's bans) survive. A flushed or edited live ruleset is noticed and restored.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import server

from mailhost.spec import Spec
from roles._config import config_file
from roles._connection import SshClientAddress
from roles._facts import read_once
from roles._units import unit


def packages(spec: Spec) -> list[str]:
    """What this role needs installed, ahead of the stack (`roles.base.apply`: port 80 opens before certbot).
    netbase: nft reads protocol names (`icmp`, `ipv6-icmp`) from its /etc/protocols, and Debian 12's nftables
    does not pull it in (the stack did)."""
    return ["nftables", "netbase"]


LIVE_SNAPSHOT = "/var/lib/mailhost/nftables.live"


class FirewallDrift(FactBase):
    """True when the live `inet mailhost` table differs from what was loaded last (flushed, edited)."""

    def command(self) -> str:
        return (f"if command -v nft >/dev/null && [ -f {LIVE_SNAPSHOT} ]; then "
                f"nft -s list table inet mailhost 2>/dev/null | cmp -s - {LIVE_SNAPSHOT} && echo same || echo drift; "
                "else echo absent; fi")

    def process(self, output: list[str]) -> bool:
        return output[0].strip() == "drift"


@deploy("firewall")
def apply(spec: Spec) -> None:
    ssh_sources = list(spec.firewall.ssh_sources)
    controller = read_once(SshClientAddress)
    if ssh_sources and controller and controller not in ssh_sources:
        ssh_sources.append(controller)  # never lock out the deploy that is running
    conf = config_file(__file__, "/etc/nftables.conf", check="nft -c -f {path}", mode="755",
                       spec=spec, tcp_ports=spec.mail_tcp_ports, ssh_sources=ssh_sources)
    unit(name="nftables is running, and at boot", service="nftables.service", running=True, enabled=True)
    drifted = host.get_fact(FirewallDrift)
    server.shell(name="Load the firewall" + (" (live ruleset drifted)" if drifted else ""),
                 commands=["nft -f /etc/nftables.conf",
                           f"mkdir -p /var/lib/mailhost && nft -s list table inet mailhost > {LIVE_SNAPSHOT}"],
                 _if=None if drifted else conf.did_change)
