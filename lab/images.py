"""Cached Debian images for test hosts: a rootfs directory (containers) and a qcow2 disk
plus kernel and initrd (VMs).

Both are built with mmdebstrap from Debian's mirror, one per release (suite), and keyed by a hash
of their recipe (suite, packages, the lab settings baked in, and the source of `_customize`), so a
second run reuses them and any change to the recipe rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import LabConfig
from .procs import LabError, run

# What a freshly rented minimal Debian VPS has (either release).
BASE_PACKAGES = ["systemd-sysv", "openssh-server", "python3", "ca-certificates", "sudo", "iproute2", "dbus"]
VM_PACKAGES = ["linux-image-amd64", "initramfs-tools"]

FIRSTBOOT_HOSTKEYS = """\
[Unit]
Description=Generate SSH host keys on first boot (as cloud images do)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Rootfs:
    path: Path
    recipe_hash: str


@dataclass(frozen=True)
class VmImage:
    disk: Path
    kernel: Path
    initrd: Path
    recipe_hash: str


def lab_ssh_key(cfg: LabConfig) -> Path:
    """The lab's SSH key (root on every test host); made once per cache."""
    key = cfg.cache_dir / "keys" / "lab_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mailhost-lab", "-f", str(key)])
    return key


def _customize(root: Path, cfg: LabConfig, suite: str, pubkey: str, vm: bool) -> None:
    """Turn a plain debootstrap tree into what a VPS provider hands over."""
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    unit = root / "etc/systemd/system/ssh-hostkeys.service"
    unit.write_text(FIRSTBOOT_HOSTKEYS)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "ssh-hostkeys.service").symlink_to("/etc/systemd/system/ssh-hostkeys.service")
    # The provider's resolver and the only way out: Debian's mirror through the lab proxy.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(f"nameserver {cfg.gateway}\n")
    (root / "etc/apt/apt.conf.d/01mailhost-lab-proxy").write_text(
        f'Acquire::http::Proxy "{cfg.apt_proxy}";\nAcquire::https::Proxy "false";\n')
    (root / "etc/apt/sources.list").write_text(
        f"deb {cfg.mirror} {suite} main\n"
        f"deb {cfg.mirror} {suite}-updates main\n"
        f"deb {cfg.mirror}-security {suite}-security main\n")
    for deb822 in (root / "etc/apt/sources.list.d").glob("*.sources"):  # one list of sources, the one above
        deb822.unlink()
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    if vm:
        (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
        # Static address from the kernel command line (ip=...), as the lab assigns it.
        sysinit = root / "etc/systemd/system/sysinit.target.wants"
        sysinit.mkdir(parents=True, exist_ok=True)
        (sysinit / "systemd-network-generator.service").symlink_to(
            "/lib/systemd/system/systemd-network-generator.service")
        (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")


def _recipe(cfg: LabConfig, suite: str, pubkey: str, vm: bool) -> str:
    recipe = {
        "suite": suite, "mirror": cfg.mirror, "packages": BASE_PACKAGES + (VM_PACKAGES if vm else []),
        "gateway": cfg.gateway, "proxy": cfg.apt_proxy, "pubkey": pubkey, "vm": vm,
        "customize": inspect.getsource(_customize),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _debootstrap(cfg: LabConfig, suite: str, packages: list[str], target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=cfg.cache_dir) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        proc = subprocess.run(
            ["mmdebstrap", "--variant=apt", "--include=" + ",".join(packages),
             suite, str(tarball), cfg.mirror],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"mmdebstrap failed: {proc.stderr.strip()[-1500:]}")
        target.mkdir(parents=True)
        run(["tar", "-xpf", str(tarball), "-C", str(target)], timeout=600)


def ensure_rootfs(cfg: LabConfig, suite: str) -> Rootfs:
    """The container rootfs of a release, built once per recipe."""
    pubkey = lab_ssh_key(cfg).with_suffix(".pub").read_text()
    digest = _recipe(cfg, suite, pubkey, vm=False)
    final = cfg.cache_dir / "rootfs" / f"{suite}-{digest}"
    with _lock(cfg.cache_dir / f"rootfs-{suite}.lock"):
        if not (final / ".complete").exists():
            tmp = final.with_name(final.name + ".building")
            shutil.rmtree(tmp, ignore_errors=True)
            _debootstrap(cfg, suite, BASE_PACKAGES, tmp)
            _customize(tmp, cfg, suite, pubkey, vm=False)
            (tmp / ".complete").write_text(digest)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    return Rootfs(final, digest)


def ensure_vm_image(cfg: LabConfig, suite: str) -> VmImage:
    """The VM base disk (qcow2) of a release with the kernel and initrd beside it, built once per recipe."""
    pubkey = lab_ssh_key(cfg).with_suffix(".pub").read_text()
    digest = _recipe(cfg, suite, pubkey, vm=True)
    final = cfg.cache_dir / "vm" / f"{suite}-{digest}"
    with _lock(cfg.cache_dir / f"vm-{suite}.lock"):
        if not (final / ".complete").exists():
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir(parents=True)
            tree = final / "tree"
            _debootstrap(cfg, suite, BASE_PACKAGES + VM_PACKAGES, tree)
            _customize(tree, cfg, suite, pubkey, vm=True)
            kernels = sorted((tree / "boot").glob("vmlinuz-*"))
            initrds = sorted((tree / "boot").glob("initrd.img-*"))
            if not kernels or not initrds:
                raise LabError("VM image: no kernel or initrd in /boot after mmdebstrap")
            shutil.copy(kernels[-1], final / "vmlinuz")
            shutil.copy(initrds[-1], final / "initrd.img")
            raw = final / "disk.raw"
            run(["mkfs.ext4", "-q", "-d", str(tree), "-L", "root", str(raw), "6G"], timeout=600)
            run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(final / "base.qcow2")], timeout=600)
            raw.unlink()
            shutil.rmtree(tree)
            (final / ".complete").write_text(digest)
    return VmImage(final / "base.qcow2", final / "vmlinuz", final / "initrd.img", digest)
