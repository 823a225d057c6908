"""Base: who the host is (hostname, FQDN in /etc/hosts, /etc/mailname), packages, time sync."""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd

from mailhost.spec import Spec

PACKAGES = ["systemd-timesyncd", "ca-certificates", "ssl-cert"]


@deploy("base")
def apply(spec: Spec, packages: list[str]) -> None:
    fqdn = spec.hostname
    server.hostname(name="Hostname is the mail host name", hostname=fqdn)
    # Resolve our own FQDN without DNS, the Debian way (127.0.1.1), so services start offline.
    files.line(name="/etc/hosts maps the FQDN", path="/etc/hosts", line=r"^127\.0\.1\.1\s",
               replace=f"127.0.1.1\t{fqdn}\t{fqdn.split('.', 1)[0]}")
    files.put(name="/etc/mailname is the mail host name", src=StringIO(f"{fqdn}\n"), dest="/etc/mailname",
              mode="644")
    # One apt transaction for the whole stack: as fast as a plain `apt-get install`.
    apt.update(name="Package lists are fresh", cache_time=3600)
    apt.packages(name="Mail stack packages", packages=sorted(set(PACKAGES + packages)), no_recommends=True)
    # Time sync matters for TLS, DKIM timestamps and DNSSEC (skipped by systemd inside containers).
    systemd.service(name="Time sync enabled", service="systemd-timesyncd", enabled=True, running=None)
