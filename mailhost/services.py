"""The host's public services: one table that the spec (ports it reserves), the firewall (ports it opens)
and verify (TLS on each port, reachability) all read, so a port is added or changed in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Service:
    port: int  # TCP
    protocol: str  # smtp, http, https, imap, pop3, managesieve
    tls: str | None  # "starttls", "implicit", or None (ACME's HTTP-01 is plain HTTP)
    purpose: str
    feature: str | None = None  # the `features` flag of the spec that turns it on; None: always on
    login: bool = True  # users log in here (Fail2Ban counts failed logins and bans on it)


SERVICES = (
    Service(25, "smtp", "starttls", "SMTP from other servers (MX)", login=False),
    Service(80, "http", None, "ACME HTTP-01 challenges (certbot)", login=False),
    Service(443, "https", "implicit", "MTA-STS policy and mail client autoconfig (nginx)", feature="web",
            login=False),
    Service(143, "imap", "starttls", "IMAP with STARTTLS"),
    Service(465, "smtp", "implicit", "submission over implicit TLS"),
    Service(587, "smtp", "starttls", "submission with STARTTLS"),
    Service(993, "imap", "implicit", "IMAP over implicit TLS"),
    Service(995, "pop3", "implicit", "POP3 over implicit TLS", feature="pop3"),
    Service(4190, "managesieve", "starttls", "ManageSieve with STARTTLS", feature="managesieve"),
)

# Ports every mail host opens, whatever its spec turns on: no firewall rule of the spec may claim them.
ALWAYS_ON_PORTS = frozenset(s.port for s in SERVICES if s.feature is None)


# Fail2Ban's jails (the fail2ban role writes them, verify checks they are loaded): failed SSH logins, and
# failed mail logins (IMAP, POP3, ManageSieve, SMTP AUTH), each counted once per attempt.
JAILS = ("sshd", "mail-logins")


def services_on(features: Any) -> list[Service]:
    """The services a spec's `features` turn on (the always-on ones and the flagged ones that are set)."""
    return [s for s in SERVICES if s.feature is None or getattr(features, s.feature)]
