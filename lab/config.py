"""Where the lab lives and how its network is laid out.

One lab per machine. Its addresses come from 198.18.0.0/24 (RFC 2544's range for
testing network equipment), which never routes anywhere: everything is on a bridge
on this machine and in network namespaces the lab creates itself. IP forwarding
stays off and there is no NAT, so test hosts reach nothing but the lab.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


# The Debian releases a test host can run, by suite name: what mailhost supports, newest (the default) first.
RELEASES = ("trixie", "bookworm")
DEFAULT_RELEASE = RELEASES[0]


@dataclass(frozen=True)
class LabConfig:
    """Paths and addresses of the lab. Defaults suit a root shell on a Debian 12 machine."""

    cache_dir: Path = Path(os.environ.get("MAILHOST_LAB_CACHE", "/var/cache/mailhost-lab"))
    state_dir: Path = Path(os.environ.get("MAILHOST_LAB_STATE", "/var/lib/mailhost-lab"))
    bridge: str = "mhlab0"
    network: ipaddress.IPv4Network = ipaddress.IPv4Network("198.18.0.0/24")
    network6: ipaddress.IPv6Network = ipaddress.IPv6Network("fd6d:6c68:6c61::/64")
    parent_zone: str = "test."
    mirror: str = "http://deb.debian.org/debian"

    # Fixed roles inside the network (host part of the address).
    def addr(self, index: int) -> str:
        return str(self.network.network_address + index)

    def addr6(self, index: int) -> str:
        return str(self.network6.network_address + index)

    @property
    def gateway(self) -> str:
        """The bridge: validating resolver, apt proxy, Pebble, and the test runner itself."""
        return self.addr(1)

    @property
    def nameserver(self) -> str:
        """The authoritative BIND (ns1.test.), which also accepts RFC 2136 updates."""
        return self.addr(2)

    @property
    def receiver(self) -> str:
        """The remote receiver (mx.remote.test.), in its own namespace."""
        return self.addr(3)

    @property
    def outsider(self) -> str:
        """A second client address for tests that must not come from the runner (fail2ban)."""
        return self.addr(4)

    host_first: int = 10
    host_last: int = 250

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.gateway}:3142"

    @property
    def acme_directory(self) -> str:
        return f"https://{self.gateway}:14000/dir"

    @property
    def netmask_bits(self) -> int:
        return self.network.prefixlen
