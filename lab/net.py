"""The lab network: one bridge, a network namespace per peer, veth or tap links.

Nothing here enables forwarding or NAT: a namespace on the bridge can talk to the
bridge's addresses and to other namespaces on it, and to nothing else.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from .config import LabConfig
from .procs import run


def mac_for(address: str) -> str:
    """A fixed, locally administered MAC per IPv4 address, so ARP caches never go stale."""
    octets = ipaddress.IPv4Address(address).packed
    return "02:6d:68:" + ":".join(f"{b:02x}" for b in octets[1:])


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def bridge_up(cfg: LabConfig) -> None:
    """Create the lab bridge with the runner's and the nameserver's addresses."""
    if not link_exists(cfg.bridge):
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    # Plain bridge, no STP, no forwarding delay: links are usable at once.
    Path(f"/sys/class/net/{cfg.bridge}/bridge/forward_delay").write_text("0")
    # A MAC of its own: else the bridge takes its lowest port's and changes it when that host goes, and every
    # other host's ARP entry for the gateway points nowhere for the next half minute (with tests running side
    # by side, a certbot on one host timed out reaching Pebble while another host was removed).
    run(["ip", "link", "set", cfg.bridge, "address", mac_for(cfg.gateway)])
    for address in (cfg.gateway, cfg.nameserver):
        run(["ip", "addr", "replace", f"{address}/{cfg.netmask_bits}", "dev", cfg.bridge])
    run(["ip", "addr", "replace", f"{cfg.addr6(1)}/{cfg.network6.prefixlen}", "dev", cfg.bridge, "nodad"])
    run(["ip", "link", "set", cfg.bridge, "up"])


def bridge_down(cfg: LabConfig) -> None:
    if link_exists(cfg.bridge):
        run(["ip", "link", "del", cfg.bridge], check=False)


def peer_up(cfg: LabConfig, netns: str, index: int, link: str) -> None:
    """A namespace `netns` with eth0 at lab address `index`, linked to the bridge by veth `link`."""
    address, address6 = cfg.addr(index), cfg.addr6(index)
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    if not link_exists(link):
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", link, "master", cfg.bridge, "up"])
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", "eth0", "address", mac_for(address)])
    run([*ns, "addr", "replace", f"{address}/{cfg.netmask_bits}", "dev", "eth0"])
    run([*ns, "addr", "replace", f"{address6}/{cfg.network6.prefixlen}", "dev", "eth0", "nodad"])
    run([*ns, "link", "set", "eth0", "up"])
    run([*ns, "link", "set", "lo", "up"])


def peer_down(netns: str, link: str) -> None:
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)
    if link_exists(link):  # normally gone with the namespace
        run(["ip", "link", "del", link], check=False)


def tap_up(cfg: LabConfig, tap: str) -> None:
    if not link_exists(tap):
        run(["ip", "tuntap", "add", tap, "mode", "tap"])
    run(["ip", "link", "set", tap, "master", cfg.bridge, "up"])


def tap_down(tap: str) -> None:
    if link_exists(tap):
        run(["ip", "link", "del", tap], check=False)


def lab_links(prefix: str = "mhl-") -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(prefix))


def lab_namespaces(prefix: str = "mhl-") -> list[str]:
    base = Path("/run/netns")
    return sorted(p.name for p in base.iterdir() if p.name.startswith(prefix)) if base.is_dir() else []
