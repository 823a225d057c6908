"""Base: who the host is (hostname, FQDN in /etc/hosts, /etc/mailname), packages, time sync."""

from __future__ import annotations

from io import StringIO
from pathlib import PurePosixPath

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server


from mailhost.spec import Spec
from roles._facts import read_once
from roles._units import unit


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["systemd-timesyncd", "ca-certificates", "ssl-cert"]


# While the stack is installed, package scripts must not start services: each would start with
# Debian's default config only to be restarted with ours (OpenDKIM alone takes 1-3 s to stop), and
# Fail2Ban's default jail fails on a host without auth.log. Each role starts its service once it
# is configured. The file is ours only while it says so; someone else's policy is left alone.
# rspamd is the exception: its first start compiles pattern caches (about 10 s of CPU) and keeps that
# memory until restarted (measured 442-633 MB RSS, against about 200 MB after a restart). Started by
# its package, it compiles while the install goes on, and the rspamd role's restart then starts it
# lean from the caches.
POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_MARK = "# mailhost: services start once configured, not during the package install"
POLICY = f'#!/bin/sh\n{POLICY_MARK}\ncase "$*" in *rspamd*) exit 0 ;; esac\nexit 101\n'


def placeholder_command(path: str, text: str) -> StringCommand:
    """`path` holds `text` if it did not exist (its directory made as needed); an existing file is left alone."""
    return StringCommand("[ -e", QuoteString(path), "] || { mkdir -p", QuoteString(str(PurePosixPath(path).parent)),
                         "&& printf '%s'", QuoteString(text), ">", QuoteString(path), "; }")


class PolicyRcD(FactBase):
    """Who owns /usr/sbin/policy-rc.d: "mailhost" (left by an interrupted run), "other", or None (absent)."""

    def command(self) -> str:
        return (f"if grep -qxF '{POLICY_MARK}' {POLICY_RC_D} 2>/dev/null; then echo mailhost; "
                f"elif [ -e {POLICY_RC_D} ]; then echo other; fi")

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output else None


class DpkgInterrupted(FactBase):
    """True when a dpkg run was cut off (e.g. an earlier deploy lost its SSH connection mid-install)."""

    def command(self) -> str:
        return "ls -A /var/lib/dpkg/updates 2>/dev/null | head -1"

    def process(self, output: list[str]) -> bool:
        return bool(output and output[0].strip())


@deploy("base")
def apply(spec: Spec, first: list[str] | None = None) -> None:
    """Who the host is, fresh package lists, and the packages `first` (firewall, ACME client, rspamd) installed
    ahead of the rest of the stack (`install`), so that what they do in the background overlaps the long install."""
    fqdn = spec.hostname
    server.hostname(name="Hostname is the mail host name", hostname=fqdn)
    # Resolve our own FQDN without DNS, the Debian way (127.0.1.1), so services start offline.
    files.line(name="/etc/hosts maps the FQDN", path="/etc/hosts", line=r"^127\.0\.1\.1\s",
               replace=f"127.0.1.1\t{fqdn}\t{fqdn.split('.', 1)[0]}")
    files.put(name="/etc/mailname is the mail host name", src=StringIO(f"{fqdn}\n"), dest="/etc/mailname",
              mode="644")
    # A run interrupted mid-install (SSH dropped, controller killed) may leave apt running or dpkg
    # half-done: wait for the lock instead of failing, and finish dpkg's work first.
    files.put(name="apt waits for a held lock", src=StringIO('DPkg::Lock::Timeout "900";\n'),
              dest="/etc/apt/apt.conf.d/90mailhost-lock-timeout", mode="644")
    if host.get_fact(DpkgInterrupted):
        server.shell(name="Finish an interrupted dpkg run",
                     commands=["timeout 900 sh -c 'while pidof apt-get apt dpkg >/dev/null; do sleep 1; done'",
                               "dpkg --configure -a"])
    apt.update(name="Package lists are fresh", cache_time=3600)
    missing, policy = _missing(spec), read_once(PolicyRcD)
    if missing and policy is None:
        files.put(name="Package scripts start no services", src=StringIO(POLICY), dest=POLICY_RC_D, mode="755")
    if ahead := sorted(missing & set(first or ())):
        apt.packages(name=f"Packages ahead of the stack ({', '.join(ahead)})", packages=ahead, no_recommends=True)


@deploy("base")
def install(spec: Spec) -> None:
    """The whole stack (`roles.all_packages`) in one apt transaction (after `apply`'s packages)."""
    from roles import all_packages, all_placeholders, all_preseeds  # every role's, this one's among them
    missing, policy = _missing(spec), read_once(PolicyRcD)
    if missing:
        answers = map(QuoteString, all_preseeds())
        server.shell(name="debconf has the roles' answers",
                     commands=[StringCommand("printf '%s\\n'", *answers, "| debconf-set-selections")])
        server.shell(name="Files the packages need during their install are there", commands=[
            placeholder_command(path, text) for path, text in all_placeholders().items()])
    done = apt.packages(name="Mail stack packages", packages=all_packages(spec), no_recommends=True)
    if (missing and policy is None) or policy == "mailhost":
        files.file(name="Package scripts may start services again", path=POLICY_RC_D, present=False)
    # Time sync matters for TLS, DKIM timestamps and DNSSEC. Started here once, as its package script
    # did not; systemd itself skips it inside containers, so a "running" check would never settle.
    server.shell(name="Time sync is started", commands=["systemctl start systemd-timesyncd"], _if=done.did_change)
    unit(name="Time sync enabled", service="systemd-timesyncd.service", enabled=True, running=None)


def _missing(spec: Spec) -> set[str]:
    """The stack's packages not installed when the run began."""
    from roles import all_packages
    return set(all_packages(spec)) - set(read_once(DebPackages))
