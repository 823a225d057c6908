#!/usr/bin/env python3
"""Lab figures: image builds (cold and warm cache), fresh host to SSH, mail-stack apt install per kind.

    .venv/bin/python benchmarks/lab.py [--no-vm] [--samples N] [--release trixie|bookworm]

Prints figures only; nothing here asserts a time. Uses (and, if it started it, stops) the lab.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the roles/ package

from lab import Lab, LabConfig, images
from lab.config import DEFAULT_RELEASE, RELEASES

from mailhost.spec import parse_spec
from roles import all_packages

# The Debian packages the roles install for a minimal spec.
MAIL_STACK = all_packages(parse_spec({
    "hostname": "mail.example.org", "domains": [{"name": "example.org"}],
    "mailboxes": [{"address": "a@example.org", "password_hash": "{SHA512-CRYPT}$6$x$y"}]}))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return time.monotonic() - start, result


def row(what: str, seconds: float | None, note: str = "") -> None:
    figure = "n/a" if seconds is None else f"{seconds:8.1f} s"
    print(f"{what:<46} {figure:>10}  {note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-vm", action="store_true", help="skip the qemu figures (slow under TCG)")
    parser.add_argument("--samples", type=int, default=3, help="fresh containers to time (median)")
    parser.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE, help="Debian release of the hosts")
    args = parser.parse_args()
    release = args.release
    print(f"Debian release: {release}")

    with tempfile.TemporaryDirectory(prefix="mailhost-bench-cache-", dir="/var/tmp") as cold:
        cfg = replace(LabConfig(), cache_dir=Path(cold))
        row("rootfs build, cold cache", timed(images.ensure_rootfs, cfg, release)[0])
        row("rootfs build, warm cache", timed(images.ensure_rootfs, cfg, release)[0])
        if not args.no_vm:
            row("VM disk image build, cold cache", timed(images.ensure_vm_image, cfg, release)[0])
            row("VM disk image build, warm cache", timed(images.ensure_vm_image, cfg, release)[0])

    lab = Lab()
    seconds, started = timed(lab.up)
    row("lab up (BIND x2, apt proxy, Pebble, receiver)", seconds, "" if started else "(was already up)")
    try:
        boots = []
        for i in range(args.samples):
            seconds, host = timed(lab.new_host, f"bench-c{i}", release=release)
            boots.append(seconds)
            if i:
                lab.remove_host(host.name)
        row("fresh container to SSH (median)", statistics.median(boots),
            f"of {len(boots)}: " + ", ".join(f"{b:.1f}" for b in boots))
        hosts = [lab.host("bench-c0")]
        if not args.no_vm:
            seconds, vm = timed(lab.new_host, "bench-v0", "vm", release=release)
            row("fresh VM to SSH", seconds, f"accel={vm.record.accel}")
            hosts.append(vm)
        install = "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q " + " ".join(MAIL_STACK)
        for host in hosts:
            seconds, _ = timed(host.ssh, install, timeout=3600)
            row(f"mail-stack apt install ({host.kind})", seconds, f"{len(MAIL_STACK)} packages + dependencies")
    finally:
        for host in lab.hosts():
            if host.name.startswith("bench-"):
                lab.remove_host(host.name)
        if started:
            lab.down()


if __name__ == "__main__":
    main()
