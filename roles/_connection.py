"""The SSH connection the deploy runs over."""

from __future__ import annotations

import ipaddress
import socket

from pyinfra import host
from pyinfra.api import FactBase


class SshClientAddress(FactBase):
    """The address this deploy connects from, as the host sees it: the firewall keeps SSH open to it even
    when SSH is restricted, and Fail2Ban never bans it. None when the host does not say (or says nonsense)."""

    def command(self) -> str:
        return 'echo "${SSH_CONNECTION%% *}"'

    def process(self, output: list[str]) -> str | None:
        try:
            return str(ipaddress.ip_address(output[0].strip())) if output else None
        except ValueError:  # it goes into config files: only an address is taken
            return None


def send_without_delay() -> None:
    """Turn off Nagle's algorithm on pyinfra's SSH (paramiko) socket.

    Paramiko leaves it on, so each small command write waits for the server's delayed ACK: about
    40 ms per command, measured here as 48 ms vs 5.5 ms for `true`. A deploy runs a few hundred
    commands (facts and operations), so this is most of a no-op run. Other connectors and proxied
    connections: left alone.
    """
    transport = getattr(getattr(host.connector, "client", None), "get_transport", lambda: None)()
    sock = getattr(transport, "sock", None)  # a ProxyCommand (ssh_config) is no socket: nothing to tune
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
