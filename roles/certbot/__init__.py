"""Certificates: certbot for the mail host name over HTTP-01, renewal timer, reload hook, key reuse.

The key is reused across renewals (`--reuse-key`) so a TLSA record of the key stays valid.
A private ACME CA (such as the lab's) is trusted system-wide from `tls.ca_bundle`: before the first
issuance, by the same background job.

The first certificate is asked for in the background (`apply`): issuance is mostly waiting for the CA
(validation, then polling), so the roles that do not need it go on meanwhile, and `ready` waits for it
before Dovecot and Postfix, which do. A run cut off meanwhile leaves certbot to finish; the next run
finds the certificate, or asks again.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from mailhost import hostinfo
from mailhost.spec import Spec
from roles._config import config_file


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["certbot"]


class TlsPublicKeys(FactBase):
    """{certificate name: base64 SubjectPublicKeyInfo} of every certbot certificate's key (TLSA records)."""

    def command(self) -> str:
        return hostinfo.TLS_PUBLIC_KEYS

    def process(self, output: list[str]) -> dict[str, str]:
        return hostinfo.parse_tls_public_keys(output)


CA_DEST = "/usr/local/share/ca-certificates/mailhost-private-ca.crt"


def live_dir(spec: Spec) -> str:
    return f"/etc/letsencrypt/live/{spec.hostname}"


STATE = "/var/lib/mailhost"
PID, LOG = f"{STATE}/certbot.pid", f"{STATE}/certbot.log"


def certonly_command(spec: Spec) -> StringCommand:
    """certbot's first issuance. Every spec value is quoted by pyinfra, never formatted into the command."""
    return StringCommand(
        "certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos", "--reuse-key",
        "--server", QuoteString(spec.tls.acme_directory), "-m", QuoteString(spec.acme_contact),
        "--cert-name", QuoteString(spec.hostname), "-d", QuoteString(spec.hostname), "--preferred-challenges",
        "http-01")


RUNNING = f'[ -s {PID} ] && grep -qs certbot "/proc/$(cat {PID})/cmdline"'  # (a pid may be reused later)


def request_command(spec: Spec) -> StringCommand:
    """Start the issuance in the background (unless one still runs); its pid and output go under STATE.
    With a private ACME CA, the system trusts it first, in the same background job (`certbot` talks to
    the CA over HTTPS): rebuilding the trust store takes over a second that the deploy need not wait for."""
    trust = ["sh", "-c", QuoteString('update-ca-certificates >/dev/null && exec "$@"'), "sh"] \
        if spec.tls.ca_bundle else []
    return StringCommand(
        f"mkdir -p {STATE} && if {RUNNING}; then :; else",
        "setsid", *trust, certonly_command(spec), f">{LOG} 2>&1 </dev/null & echo $! >{PID}; fi")


def ready_command(spec: Spec) -> StringCommand:
    """Wait for the background issuance; fail with certbot's last words and a hint if it got nothing."""
    hint = (f"ACME: could not get a certificate for {spec.hostname}: does its A/AAAA record point at this host, "
            "and is port 80 reachable?")
    return StringCommand(
        f"timeout 900 sh -c 'while {RUNNING}; do sleep 0.2; done'; rm -f {PID};",
        "test", "-s", QuoteString(f"{live_dir(spec)}/fullchain.pem"),
        f"|| {{ tail -n 20 {LOG} >&2; echo", QuoteString(hint), ">&2; exit 1; }")


_found: dict[str, bool] = {}


def has_certificate(spec: Spec) -> bool:
    """Whether the host had the certificate when the run began: read once per host (`apply` and `ready` both
    ask, and pyinfra reads a fact again on every call)."""
    if host.name not in _found:
        _found[host.name] = host.get_fact(File, path=f"{live_dir(spec)}/fullchain.pem") is not None
    return _found[host.name]


@deploy("certbot")
def apply(spec: Spec) -> None:
    if spec.tls.ca_bundle:
        ca = files.put(name="Private ACME CA is uploaded", src=str(spec.base_dir / spec.tls.ca_bundle), dest=CA_DEST,
                       mode="644")
        if has_certificate(spec):  # else the issuance below trusts it first
            server.shell(name="Private ACME CA is trusted", commands=["update-ca-certificates"],
                         _if=ca.did_change)
    config_file(__file__, "/etc/letsencrypt/renewal-hooks/deploy/mailhost-reload", mode="755")
    if not has_certificate(spec):
        server.shell(name=f"Certificate for {spec.hostname} is asked for (ACME HTTP-01, in the background)",
                     commands=[request_command(spec)])
    systemd.service(name="Renewal timer is active", service="certbot.timer", running=True, enabled=True)


@deploy("certbot")
def ready(spec: Spec) -> None:
    """The certificate exists (waiting for the issuance `apply` started, if any)."""
    if not has_certificate(spec):
        server.shell(name=f"Certificate for {spec.hostname} is obtained", commands=[ready_command(spec)])
