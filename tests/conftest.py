"""Fixtures over the local lab (lab). End-to-end tests that cannot get the lab or a
host *error*; nothing here skips."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from lab import Lab, TestHost, net, procs
from lab.config import DEFAULT_RELEASE

_names = itertools.count(1)


def leftovers() -> list[str]:
    """Anything of the lab still on this machine: processes, namespaces, links, mounts, cgroups."""
    found = [f"netns {n}" for n in net.lab_namespaces()] + [f"link {n}" for n in net.lab_links()]
    if net.link_exists(Lab().cfg.bridge):
        found.append(f"bridge {Lab().cfg.bridge}")
    state_dir = str(Lab().cfg.state_dir)
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
              if state_dir in line.split()[1]]
    found += [f"cgroup {c}" for c in procs.leftover_cgroups()]
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout.splitlines()
    found += [f"process {p}" for p in ps if any(k in p for k in (
        "systemd-nspawn", "qemu-system", "named -g", "pebble -config", "apt-cacher-ng -c", "lab.receiver"))]
    return found


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The lab, started fresh for this test session and removed (certainly) at its end. `./dev test` runs the
    VM's tests as a second session beside the others: both share one lab, the last one out removes it."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end lab needs root (network namespaces, systemd-nspawn, qemu)")
    lab = Lab()
    lab.join()
    yield lab
    if lab.leave():
        left = leftovers()
        assert not left, f"the lab left things behind: {left}"


@pytest.fixture
def fresh_host(lab: Lab):
    """Factory: `fresh_host(kind="container"|"vm", release="trixie"|"bookworm")` boots a pristine Debian host
    for this test (Debian 13 unless told)."""
    made: list[TestHost] = []

    def make(kind: str = "container", name: str | None = None, release: str = DEFAULT_RELEASE) -> TestHost:
        host = lab.new_host(name or f"{kind[0]}{os.getpid() % 1000}n{next(_names)}", kind, release=release)
        made.append(host)
        return host

    yield make
    for host in made:
        lab.remove_host(host.name)
