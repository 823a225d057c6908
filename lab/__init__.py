"""The local mail lab: fresh Debian test hosts, DNS with DNSSEC, an ACME CA and a remote receiver.

    lab = Lab()
    lab.up()                       # bridge, BIND x2, apt proxy, Pebble, receiver
    host = lab.new_host("mx1")     # a fresh Debian 13 container (kind="vm" for qemu, release="bookworm")
    ...
    lab.down()                     # everything stopped and removed

    lab.join() ... lab.leave()     # shared by several test sessions at once (the VM lane beside the rest)

State (what runs, which hosts exist) is kept in `<state_dir>/lab.json` so the CLI and
the tests can manage the same lab from different processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from . import images, net, pki, procs
from .config import DEFAULT_RELEASE, RELEASES, LabConfig
from .dns import LabDns
from .hosts import KINDS, HostRecord, TestHost
from .procs import LabError
from .services import Acme, Receiver, start_apt_proxy

__all__ = ["Lab", "LabConfig", "LabError", "TestHost"]

OUTSIDER_NETNS = "mhl-outsider"


class Lab:
    def __init__(self, cfg: LabConfig | None = None):
        self.cfg = cfg or LabConfig()
        procs.become_subreaper()
        self.dns = LabDns(self.cfg)
        self.acme = Acme(self.cfg)
        self.receiver = Receiver(self.cfg)
        self.state_file = self.cfg.state_dir / "lab.json"

    # -- state -----------------------------------------------------------------
    @contextmanager
    def _state(self):
        """Read-modify-write the state file under an exclusive lock."""
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cfg.state_dir / "lab.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
            state.setdefault("daemons", {})
            state.setdefault("hosts", {})
            yield state
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.rename(self.state_file)

    def _read_state(self) -> dict:
        if not self.state_file.exists():
            return {"daemons": {}, "hosts": {}}
        return json.loads(self.state_file.read_text())

    # -- paths tests need ------------------------------------------------------
    @property
    def lab_ca(self) -> Path:
        """The lab CA: signs Pebble's API certificate and the remote receiver's."""
        return self.cfg.state_dir / "pki" / "lab-ca.pem"

    @property
    def ca_bundle(self) -> Path:
        """Lab CA + Pebble's root: what a host must trust to use the lab's ACME CA and verify its certs."""
        return self.cfg.state_dir / "pki" / "ca-bundle.pem"

    @property
    def spool(self):
        """The remote receiver's spool (`receiver.Spool`): what arrived at remote.test."""
        from .receiver import Spool  # not at import time: `python -m ...receiver` runs that module
        return Spool(self.receiver.spool_dir)

    def spec_dir(self, host_name: str) -> Path:
        """Where `./dev lab host new --mail` keeps a host's spec (read by inventory/lab.py)."""
        return self.cfg.state_dir / "specs" / host_name

    @property
    def ssh_key(self) -> Path:
        return images.lab_ssh_key(self.cfg)

    # -- lifecycle -------------------------------------------------------------
    def is_up(self) -> bool:
        daemons = self._read_state()["daemons"]
        return bool(daemons) and all(procs.Daemon(**d).alive() for d in daemons.values())

    def up(self) -> bool:
        """Start the lab if it is not running; return True if this call started it."""
        if self.is_up():
            return False
        self.down()  # clear any half-started or stale lab first
        cfg = self.cfg
        started: dict[str, procs.Daemon] = {}
        try:
            images.lab_ssh_key(cfg)
            net.bridge_up(cfg)
            net.peer_up(cfg, Receiver.netns, 3, "mhl-remote")
            net.peer_up(cfg, OUTSIDER_NETNS, 4, "mhl-outsider")
            ca, _ = pki.ensure_ca(cfg.state_dir / "pki")
            for d in self.dns.start():
                started[d.name] = d
            parent = cfg.parent_zone
            self.dns.add_zone(f"lab.{parent}", f"acme A {cfg.gateway}\n")
            # remote.test: the outside world. Its mail comes from its MX and from the test runner
            # (client.remote.test), both with forward-confirmed reverse DNS and covered by SPF.
            self.dns.add_zone(f"remote.{parent}",
                              f"@ MX 10 mx\nmx A {cfg.receiver}\nmx AAAA {cfg.addr6(3)}\nclient A {cfg.gateway}\n"
                              f"mta-sts A {cfg.receiver}\n"
                              f"@ TXT \"v=spf1 ip4:{cfg.receiver} ip4:{cfg.gateway} -all\"\n")
            self.dns.add_zone(f"dnsbl.{parent}", "")
            self.dns.set_ptr(cfg.receiver, f"mx.remote.{parent}")
            self.dns.set_ptr(cfg.gateway, f"client.remote.{parent}")
            started["apt-proxy"] = start_apt_proxy(cfg)
            started["pebble"] = self.acme.start(ca)
            started["receiver"] = self.receiver.start(ca)
            self.ca_bundle.write_bytes(ca.read_bytes() + self.acme.root_file.read_bytes())
        except BaseException:
            for name, daemon in started.items():
                procs.stop(name, daemon)
            self._teardown_network()
            raise
        with self._state() as state:
            state["daemons"] = {name: d.to_json() for name, d in started.items()}
        return True

    def down(self) -> None:
        """Stop everything the lab started, remove every host, namespace, link and cgroup."""
        state = self._read_state()
        for name in list(state["hosts"]):
            self.remove_host(name)
        for name, data in state["daemons"].items():
            procs.stop(name, procs.Daemon(**data))
        for cg in procs.leftover_cgroups():  # e.g. from a run that was killed
            procs.stop(cg.name)
        procs.remove_parent_cgroups()
        self._teardown_network()
        for sub in ("dns", "acme", "receiver", "apt-proxy", "pki", "hosts", "specs"):
            shutil.rmtree(self.cfg.state_dir / sub, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    # -- shared use -------------------------------------------------------------
    @contextmanager
    def _users(self):
        """The processes using the lab (a file `<pid>.<start time>` each), under a lock of their own (up() and
        down() take the state lock inside it)."""
        users = self.cfg.state_dir / "users"
        users.mkdir(parents=True, exist_ok=True)
        with open(self.cfg.state_dir / "users.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for entry in users.iterdir():  # a session that was killed never left
                pid, _, start = entry.name.partition(".")
                if not procs.Daemon("user", int(pid), int(start), "").alive():
                    entry.unlink(missing_ok=True)
            yield users

    @staticmethod
    def _me() -> str:
        return f"{os.getpid()}.{procs.start_time(os.getpid())}"

    def join(self) -> None:
        """Use the lab beside other processes: the first one in starts it fresh (whatever an earlier, killed
        run left is cleared), the others find it running."""
        with self._users() as users:
            if not any(users.iterdir()) or not self.is_up():
                self.down()
                self.up()
            (users / self._me()).touch()

    def leave(self) -> bool:
        """Stop using the lab; the last one out takes it down. True if this call did."""
        with self._users() as users:
            (users / self._me()).unlink(missing_ok=True)
            if any(users.iterdir()):
                return False
            self.down()
            return True

    def _teardown_network(self) -> None:
        # Namespaces take their veth ends with them; what remains on the bridge side is removed by name.
        for ns in net.lab_namespaces():
            net.peer_down(ns, ns)
        for link in net.lab_links():
            net.tap_down(link)
        net.bridge_down(self.cfg)

    def status(self) -> dict:
        state = self._read_state()
        return {
            "up": self.is_up(),
            "daemons": {name: {"pid": d["pid"], "alive": procs.Daemon(**d).alive(), "log": d["log"]}
                        for name, d in state["daemons"].items()},
            "hosts": {name: {"kind": h["kind"], "release": h.get("release", DEFAULT_RELEASE), "address": h["address"], "address6": h["address6"],
                             "alive": bool(h["daemon"]) and procs.Daemon(**h["daemon"]).alive()}
                      for name, h in state["hosts"].items()},
            "nameserver": self.cfg.nameserver, "resolver": self.cfg.gateway,
            "acme_directory": self.acme.directory_url, "ca_bundle": str(self.ca_bundle),
            "tsig_key_file": str(self.dns.tsig_file), "receiver": self.receiver.hostname,
            "ssh_key": str(self.ssh_key),
        }

    # -- hosts -----------------------------------------------------------------
    def new_host(self, name: str, kind: str = "container", *, release: str = DEFAULT_RELEASE, wait: bool = True,
                 timeout: float | None = None, ptr: str | None = None) -> TestHost:
        """Boot a fresh Debian host of `release` (a suite name in `RELEASES`); it gets a lab address,
        `NAME.lab.test` and a matching PTR."""
        if not self.is_up():
            raise LabError("the lab is not running: start it with `./dev lab up` (or the `lab` fixture)")
        if kind not in KINDS:
            raise LabError(f"unknown host kind {kind!r}: choose one of {', '.join(KINDS)}")
        if release not in RELEASES:
            raise LabError(f"unknown Debian release {release!r}: choose one of {', '.join(RELEASES)}")
        if not name.replace("-", "").isalnum() or len(name) > 40:
            raise LabError(f"host name {name!r}: use letters, digits and '-' (at most 40)")
        with self._state() as state:
            if name in state["hosts"]:
                raise LabError(f"a lab host named {name!r} exists already")
            used = {h["index"] for h in state["hosts"].values()}
            index = next((i for i in range(self.cfg.host_first, self.cfg.host_last + 1) if i not in used), None)
            if index is None:
                raise LabError("the lab has no free address left")
            record = HostRecord(name=name, kind=kind, index=index, address=self.cfg.addr(index),
                                address6=self.cfg.addr6(index), release=release,
                                directory=str(self.cfg.state_dir / "hosts" / name))
            state["hosts"][name] = record.to_json()  # reserve the address before the slow part
        host = KINDS[kind](self.cfg, record)
        try:
            host.start()
            with self._state() as state:
                state["hosts"][name] = record.to_json()
            fqdn = f"{name}.lab.{self.cfg.parent_zone}"
            self.dns.update(f"lab.{self.cfg.parent_zone}", lambda u: (u.replace(name, 60, "A", host.address),
                                                                       u.replace(name, 60, "AAAA", host.address6)))
            for address in (host.address, host.address6):
                self.dns.set_ptr(address, ptr or fqdn)
            if wait:
                host.wait_ssh(timeout or (60 if kind == "container" else 600))
        except BaseException:
            self.remove_host(name)
            raise
        return host

    def host(self, name: str) -> TestHost:
        data = self._read_state()["hosts"].get(name)
        if data is None:
            raise LabError(f"no lab host named {name!r}")
        record = HostRecord(**data)
        return KINDS[record.kind](self.cfg, record)

    def hosts(self) -> list[TestHost]:
        return [self.host(name) for name in self._read_state()["hosts"]]

    def remove_host(self, name: str) -> None:
        host = self.host(name)
        host.remove()
        try:
            for address in (host.address, host.address6):
                self.dns.set_ptr(address, None)
            self.dns.update(f"lab.{self.cfg.parent_zone}", lambda u: u.delete(name))
        except Exception:  # noqa: BLE001 - DNS may already be down during `lab down`
            pass
        shutil.rmtree(self.spec_dir(name), ignore_errors=True)
        with self._state() as state:
            state["hosts"].pop(name, None)

    # -- a second client on the lab network -------------------------------------
    def outsider_argv(self, argv: list[str]) -> list[str]:
        """Run `argv` from the lab's outsider address (not the test runner's)."""
        return ["ip", "netns", "exec", OUTSIDER_NETNS, *argv]
