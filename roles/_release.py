"""Which Debian the host runs, read from the host (a fact), never from the spec.

mailhost supports the releases in `SUPPORTED` on the architectures in `ARCHITECTURES`: those are the
ones whose packages the test suite converges. Where the releases differ, a role asks `debian_release()`
and branches in a few visible lines (Dovecot 2.3 on 12, 2.4 on 13); everything else is shared.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase

from roles._facts import read_once

SUPPORTED = {12: "bookworm", 13: "trixie"}
ARCHITECTURES = ("amd64",)


@dataclass(frozen=True)
class HostRelease:
    distribution: str  # os-release ID: "debian", "ubuntu", ...
    version: str  # os-release VERSION_ID: "13"; empty on testing/unstable
    name: str  # os-release PRETTY_NAME, for messages
    architecture: str  # dpkg's architecture: "amd64"

    @property
    def major(self) -> int | None:
        """The Debian major release when it is one we support, else None."""
        if self.distribution != "debian" or not self.version.isdigit():
            return None
        major = int(self.version)
        return major if major in SUPPORTED else None

    def problem(self) -> str | None:
        """Why mailhost refuses this host, or None when it is supported."""
        supported = " or ".join(f"Debian {v} ({name})" for v, name in sorted(SUPPORTED.items(), reverse=True))
        if self.major is None:
            return f"the host runs {self.name or 'an unknown system'}; mailhost supports {supported}"
        if self.architecture not in ARCHITECTURES:
            return (f"the host's architecture is {self.architecture or 'unknown'}; mailhost supports "
                    f"{', '.join(ARCHITECTURES)} (the architectures its test suite converges)")
        return None


class DebianRelease(FactBase):
    """The host's os-release identity and dpkg architecture (see `HostRelease`)."""

    def command(self) -> str:
        return ('. /etc/os-release 2>/dev/null; printf "%s\\n" "$ID" "$VERSION_ID" "$PRETTY_NAME"; '
                "dpkg --print-architecture 2>/dev/null || uname -m")

    def process(self, output: list[str]) -> HostRelease:
        fields = [line.strip() for line in output] + [""] * 4
        return HostRelease(*fields[:4])


def host_release() -> HostRelease:
    return read_once(DebianRelease)


def debian_release() -> int:
    """The host's Debian major release (12 or 13). Call `require_supported()` first."""
    major = host_release().major
    assert major is not None, "require_supported() refuses such a host before any role runs"
    return major


def require_supported() -> None:
    """Stop the deploy, before anything changes on the host or in a zone, on a release we do not support."""
    problem = host_release().problem()
    if problem:
        raise SystemExit(f"{host.name}: {problem}. Nothing was changed.")
