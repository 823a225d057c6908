"""Certificates: certbot for the mail host name over HTTP-01, renewal timer, reload hook, key reuse.

The key is reused across renewals (`--reuse-key`) so a TLSA record of the key stays valid.
A private ACME CA (such as the lab's) is trusted system-wide from `tls.ca_bundle`.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from mailhost.spec import Spec
from roles._config import config_file


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["certbot"]


CA_DEST = "/usr/local/share/ca-certificates/mailhost-private-ca.crt"


def live_dir(spec: Spec) -> str:
    return f"/etc/letsencrypt/live/{spec.hostname}"


def certonly_command(spec: Spec) -> StringCommand:
    """certbot's first issuance. Every spec value is quoted by pyinfra, never formatted into the command."""
    hint = (f"ACME: could not get a certificate for {spec.hostname}: does its A/AAAA record point at this host, "
            "and is port 80 reachable?")
    return StringCommand(
        "certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos", "--reuse-key",
        "--server", QuoteString(spec.tls.acme_directory), "-m", QuoteString(spec.acme_contact),
        "--cert-name", QuoteString(spec.hostname), "-d", QuoteString(spec.hostname), "--preferred-challenges",
        "http-01", "||", "{", "echo", QuoteString(hint), ">&2;", "exit", "1;", "}")


@deploy("certbot")
def apply(spec: Spec) -> None:
    if spec.tls.ca_bundle:
        ca = files.put(name="Private ACME CA is uploaded", src=str(spec.base_dir / spec.tls.ca_bundle), dest=CA_DEST,
                       mode="644")
        server.shell(name="Private ACME CA is trusted", commands=["update-ca-certificates"],
                     _if=ca.did_change)
    config_file(__file__, "/etc/letsencrypt/renewal-hooks/deploy/mailhost-reload", mode="755")
    if host.get_fact(File, path=f"{live_dir(spec)}/fullchain.pem") is None:
        server.shell(name=f"Certificate for {spec.hostname} is obtained (ACME HTTP-01)",
                     commands=[certonly_command(spec)])
    systemd.service(name="Renewal timer is active", service="certbot.timer", running=True, enabled=True)
