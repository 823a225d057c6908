"""The lab's small services besides DNS: the apt proxy, Pebble (ACME) and the remote receiver."""

from __future__ import annotations

import json
import socket
import ssl
import shutil
import sys
import urllib.request
from pathlib import Path

from . import pki, procs
from .deploys import REPO
from .config import LabConfig

ACNG_CONF = """\
CacheDir: {cache}
LogDir: {logs}
SupportDir: /usr/lib/apt-cacher-ng
Port: 3142
BindAddress: {address}
# Only Debian's archive and security archive; every other URL is refused (ForceManaged).
Remap-debrep: deb.debian.org/debian ; deb.debian.org/debian
Remap-secdeb: deb.debian.org/debian-security ; deb.debian.org/debian-security
ForceManaged: 1
ExThreshold: 4
PassThroughPattern: ^$
"""


def _port_open(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


def start_apt_proxy(cfg: LabConfig) -> procs.Daemon:
    """apt-cacher-ng on the bridge; its cache lives with the other caches."""
    conf = cfg.state_dir / "apt-proxy"
    logs, cache = conf / "logs", cfg.cache_dir / "apt"
    for d in (conf, logs, cache):
        d.mkdir(parents=True, exist_ok=True)
    (conf / "acng.conf").write_text(ACNG_CONF.format(cache=cache, logs=logs, address=cfg.gateway))
    daemon = procs.spawn("apt-proxy", ["apt-cacher-ng", "-c", str(conf), "ForeGround=1"], conf / "stdout.log")
    procs.wait_until("the apt proxy to listen", lambda: _port_open(cfg.gateway, 3142), timeout=15)
    return daemon


class Acme:
    """Pebble, a real ACME server, validating HTTP-01 against test hosts through the lab DNS."""

    def __init__(self, cfg: LabConfig):
        self.cfg = cfg
        self.dir = cfg.state_dir / "acme"

    @property
    def directory_url(self) -> str:
        return self.cfg.acme_directory

    @property
    def root_file(self) -> Path:
        """Pebble's issuing root: verifies certificates that test hosts obtained through ACME."""
        return self.dir / "pebble-root.pem"

    def start(self, lab_ca: Path) -> procs.Daemon:
        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        cert, key = pki.issue(lab_ca.parent, "pebble", [f"acme.lab.{cfg.parent_zone.rstrip('.')}"], [cfg.gateway])
        config = {"pebble": {
            "listenAddress": f"{cfg.gateway}:14000", "managementListenAddress": f"{cfg.gateway}:15000",
            "certificate": str(cert), "privateKey": str(key), "httpPort": 80, "tlsPort": 443,
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        (self.dir / "pebble.json").write_text(json.dumps(config, indent=2))
        daemon = procs.spawn(
            "pebble", ["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", f"{cfg.gateway}:53"],
            self.dir / "pebble.log",
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"})
        context = ssl.create_default_context(cafile=str(lab_ca))

        def fetch_root() -> bytes:
            with urllib.request.urlopen(f"https://{cfg.gateway}:15000/roots/0", context=context, timeout=2) as r:
                return r.read()
        self.root_file.write_bytes(procs.wait_until("Pebble to serve its root", fetch_root, timeout=20))
        return daemon


class Receiver:
    """The remote mail server (mx.remote.test) in its own namespace; see `receiver.py`."""

    netns = "mhl-remote"

    def __init__(self, cfg: LabConfig):
        self.cfg = cfg
        self.dir = cfg.state_dir / "receiver"
        self.domain = f"remote.{cfg.parent_zone.rstrip('.')}"
        self.hostname = f"mx.{self.domain}"

    @property
    def spool_dir(self) -> Path:
        return self.dir / "spool"

    @property
    def policy_file(self) -> Path:
        """The MTA-STS policy it serves as mta-sts.<domain> (tests write it; absent: 404)."""
        return self.dir / "mta-sts.txt"

    @property
    def cert_file(self) -> Path:
        """The certificate it serves on 25 (for tests that publish TLSA records of it)."""
        return self.dir / "receiver.pem"

    def start(self, lab_ca: Path) -> procs.Daemon:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        cert, key = pki.issue(lab_ca.parent, "receiver", [self.hostname, f"mta-sts.{self.domain}"],
                              [self.cfg.receiver])
        self.policy_file.unlink(missing_ok=True)
        shutil.copyfile(cert, self.cert_file)
        daemon = procs.spawn(
            "receiver",
            [sys.executable, "-m", "lab.receiver", "--listen", self.cfg.receiver,
             "--spool", str(self.spool_dir), "--cert", str(cert), "--key", str(key),
             "--domain", self.domain, "--hostname", self.hostname, "--policy", str(self.policy_file)],
            self.dir / "receiver.log", netns=self.netns, cwd=REPO)  # `lab` is a folder of the checkout
        procs.wait_until("the remote receiver to listen", lambda: _port_open(self.cfg.receiver, 25), timeout=20)
        return daemon
