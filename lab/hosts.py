"""Test hosts: a fresh Debian "VPS" (13 trixie or 12 bookworm) on the lab network, reachable over SSH as root.

Two kinds behind one interface:
* `ContainerHost`: systemd-nspawn booting real systemd as PID 1 from an overlay over the
  cached rootfs, in its own network namespace. Fast (SSH in about a second).
* `VmHost`: qemu booting the same Debian (plus a kernel) from a qcow2 overlay over the
  cached disk, on a tap device on the lab bridge. Own kernel, modules, sysctl, reboot.
  Uses KVM where it boots, TCG otherwise.

Both sit on the lab bridge with a lab address, so every lab peer (Pebble's validator,
the remote receiver, other hosts) reaches them as the internet would reach a VPS.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import images, net, procs
from .config import DEFAULT_RELEASE, LabConfig

SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


@dataclass
class HostRecord:
    """What the lab remembers of a host (in its state file), enough to tear it down from any process."""

    name: str
    kind: str
    index: int
    address: str
    address6: str
    directory: str
    release: str = DEFAULT_RELEASE
    daemon: dict | None = None
    accel: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class TestHost:
    """A running test host. `inventory()` gives pyinfra what it needs to connect."""

    __test__ = False  # not a pytest class

    def __init__(self, cfg: LabConfig, record: HostRecord):
        self.cfg, self.record = cfg, record

    name = property(lambda self: self.record.name)
    kind = property(lambda self: self.record.kind)
    address = property(lambda self: self.record.address)
    address6 = property(lambda self: self.record.address6)
    release = property(lambda self: self.record.release)

    @property
    def ssh_key(self) -> Path:
        return images.lab_ssh_key(self.cfg)

    @property
    def cgroup_name(self) -> str:
        return f"host-{self.name}"

    def inventory(self) -> tuple[str, dict]:
        """A pyinfra inventory entry: (hostname, host data)."""
        return (self.address, {
            "ssh_user": "root", "ssh_key": str(self.ssh_key), "ssh_port": 22,
            "ssh_known_hosts_file": "/dev/null", "ssh_strict_host_key_checking": "no",
            "lab_host_name": self.name,
        })

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", "-i", str(self.ssh_key), *SSH_OPTIONS, f"root@{self.address}", command]

    def ssh(self, command: str, *, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as root."""
        proc = subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise procs.LabError(f"{self.name}: `{command}` exited {proc.returncode}: "
                                 f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def put(self, data: bytes | str, path: str, mode: str = "644") -> None:
        """Write a file on the host."""
        if isinstance(data, str):
            data = data.encode()
        subprocess.run(["ssh", "-i", str(self.ssh_key), *SSH_OPTIONS, f"root@{self.address}",
                        f"cat > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}"],
                       input=data, check=True, capture_output=True, timeout=60)

    def wait_ssh(self, timeout: float) -> float:
        """Wait until SSH answers and systemd has finished booting; return seconds waited."""
        start = time.monotonic()

        def ready() -> bool:
            proc = subprocess.run(self.ssh_argv("systemctl is-system-running --wait"), capture_output=True,
                                  text=True, timeout=timeout)
            # 'degraded' still means booted; the test decides whether a failed unit matters.
            return proc.stdout.strip() in ("running", "degraded")
        procs.wait_until(f"SSH and boot of {self.kind} host {self.name} ({self.address}); "
                         f"console: {self.console_log}", ready, timeout=timeout, interval=0.2)
        return time.monotonic() - start

    @property
    def console_log(self) -> Path:
        return Path(self.record.directory) / "console.log"

    def reboot(self, timeout: float = 300) -> None:
        """Reboot from inside (`systemctl reboot`) and wait until it is back."""
        boot_id = self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        self.ssh("systemctl reboot", check=False, timeout=30)

        def rebooted() -> bool:
            proc = subprocess.run(self.ssh_argv("cat /proc/sys/kernel/random/boot_id"), capture_output=True,
                                  text=True, timeout=30)
            return proc.returncode == 0 and proc.stdout.strip() not in ("", boot_id)
        procs.wait_until(f"{self.name} to come back from reboot", rebooted, timeout=timeout, interval=0.5)
        self.wait_ssh(timeout)

    # Each kind implements these.
    def start(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError


class ContainerHost(TestHost):
    """systemd-nspawn container with real systemd; see module docstring."""

    @property
    def netns(self) -> str:
        return f"mhl-{self.name}"

    @property
    def veth(self) -> str:
        return f"mhl-h{self.record.index}"

    def start(self) -> None:
        rootfs = images.ensure_rootfs(self.cfg, self.release)
        base = Path(self.record.directory)
        upper, work, root = base / "upper", base / "work", base / "root"
        for d in (upper, work, root):
            d.mkdir(parents=True, exist_ok=True)
        net.peer_up(self.cfg, self.netns, self.record.index, self.veth)
        if not os.path.ismount(root):
            procs.run(["mount", "-t", "overlay", "overlay", "-o",
                       f"lowerdir={rootfs.path},upperdir={upper},workdir={work}", str(root)])
        # Per-host identity, as a provider's first boot would make it.
        (root / "etc/hostname").write_text(f"{self.name}\n")
        procs.run(["ssh-keygen", "-A", "-f", str(root)])
        nspawn = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "-D", str(root), "-M", self.name,
                  f"--network-namespace-path=/run/netns/{self.netns}", "--capability=CAP_NET_ADMIN",
                  "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only"]
        # `systemctl reboot` inside makes nspawn exit 133: start it again, like a VPS reboots.
        loop = 'while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done'
        daemon = procs.spawn(self.cgroup_name, ["bash", "-c", loop, "nspawn-loop", *nspawn], self.console_log,
                             env={"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network",
                                  "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        self.record.daemon = daemon.to_json()

    def remove(self) -> None:
        daemon = procs.Daemon(**self.record.daemon) if self.record.daemon else None
        procs.stop(self.cgroup_name, daemon, grace=0.5)
        root = Path(self.record.directory) / "root"
        if os.path.ismount(root):
            if procs.run(["umount", str(root)], check=False).returncode != 0:
                procs.run(["umount", "-l", str(root)], check=False)
        net.peer_down(self.netns, self.veth)
        shutil.rmtree(self.record.directory, ignore_errors=True)


class VmHost(TestHost):
    """qemu VM; see module docstring."""

    @property
    def tap(self) -> str:
        return f"mhl-t{self.record.index}"

    def start(self) -> None:
        image = images.ensure_vm_image(self.cfg, self.release)
        base = Path(self.record.directory)
        base.mkdir(parents=True, exist_ok=True)
        disk = base / "disk.qcow2"
        if not disk.exists():
            procs.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2", str(disk)])
        net.tap_up(self.cfg, self.tap)
        accel = vm_accelerator(self.cfg, image)
        self.record.accel = accel
        mask = str(self.cfg.network.netmask)
        cmdline = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 "
                   f"ip={self.address}:::{mask}:{self.name}:eth0:off "
                   f"ip=[{self.address6}]:::{self.cfg.network6.prefixlen}::eth0:off")
        argv = ["qemu-system-x86_64", *accel_args(accel), "-m", "2048", "-smp", "2",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
                "-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={net.mac_for(self.address)}",
                "-device", "virtio-rng-pci",
                "-serial", f"file:{self.console_log}", "-monitor", "none", "-display", "none", "-nodefaults"]
        if accel == "tcg":  # emulated, it takes every cycle it gets: it yields to the tests running beside it
            argv = ["nice", "-n", "10", *argv]
        daemon = procs.spawn(self.cgroup_name, argv, base / "qemu.log")
        self.record.daemon = daemon.to_json()

    def remove(self) -> None:
        daemon = procs.Daemon(**self.record.daemon) if self.record.daemon else None
        procs.stop(self.cgroup_name, daemon, grace=0.5)
        net.tap_down(self.tap)
        shutil.rmtree(self.record.directory, ignore_errors=True)


KINDS: dict[str, type[TestHost]] = {"container": ContainerHost, "vm": VmHost}


def accel_args(accel: str) -> list[str]:
    return ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]


def vm_accelerator(cfg: LabConfig, image: images.VmImage) -> str:
    """'kvm' where /dev/kvm really boots this kernel, else 'tcg'.

    MAILHOST_LAB_ACCEL=kvm|tcg forces a choice. Otherwise the answer is probed once
    (a short KVM boot of the kernel, watching its console) and cached beside the image:
    some nested hypervisors expose /dev/kvm yet hang or abort on a stock Debian kernel.
    """
    forced = os.environ.get("MAILHOST_LAB_ACCEL", "auto")
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    verdict = image.disk.parent / "kvm-probe"
    if not verdict.exists():
        console = image.disk.parent / "kvm-probe.console"
        console.unlink(missing_ok=True)
        probe = subprocess.Popen(
            ["qemu-system-x86_64", *accel_args("kvm"), "-m", "512", "-kernel", str(image.kernel),
             "-initrd", str(image.initrd), "-append", "console=ttyS0 panic=-1 rdinit=/bin/false",
             "-serial", f"file:{console}", "-monitor", "none", "-display", "none", "-nodefaults", "-no-reboot"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and probe.poll() is None:
            if console.exists() and "Freeing unused kernel" in console.read_text(errors="replace"):
                ok = True
                break
            time.sleep(0.2)
        probe.kill()
        probe.wait()
        verdict.write_text("kvm" if ok else "tcg")
    return verdict.read_text().strip()
