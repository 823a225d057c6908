"""Certificates: certbot over HTTP-01 for the mail host name, and for the names nginx serves (mta-sts.<domain>,
autoconfig.<domain>: certificates of their own, `mailhost.web`); renewal timer, reload hook, key reuse.

The key is reused across renewals (`--reuse-key`) so a TLSA record of the key stays valid. A certificate the
host lacks, or holds for other names (a domain added), is asked for again.
A private ACME CA (such as the lab's) is trusted system-wide from `tls.ca_bundle`: before the first
issuance, by the same background job.

Certificates are asked for in the background (`apply`): issuance is mostly waiting for the CA
(validation, then polling), so the roles that do not need it go on meanwhile, and `ready` waits for it
before Dovecot and Postfix, which do. A run cut off meanwhile leaves certbot to finish; the next run
finds the certificate, or asks again.
"""

from __future__ import annotations

import time

from pyinfra import host, logger
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy
from pyinfra.operations import files, server

from mailhost import hostinfo, rollover, web
from mailhost.spec import Spec
from roles._config import config_file
from roles._facts import read_once
from roles._units import unit


def packages(spec: Spec) -> list[str]:
    """What this role needs installed, ahead of the stack (`roles.base.apply`): certbot, and the trust store the
    background job adds a private CA to."""
    return ["certbot", "ca-certificates"]


class TlsPublicKeys(FactBase):
    """{certificate name: base64 SubjectPublicKeyInfo} of every certbot certificate's key (TLSA records)."""

    def command(self) -> str:
        return hostinfo.TLS_PUBLIC_KEYS

    def process(self, output: list[str]) -> dict[str, str]:
        return hostinfo.parse_tls_public_keys(output)


CA_DEST = "/usr/local/share/ca-certificates/mailhost-private-ca.crt"


def live_dir(spec: Spec) -> str:
    """Where the services load the mail certificate from: the slot in use (`mailhost.rollover`)."""
    return rollover.CURRENT


STATE = "/var/lib/mailhost"
PID, LOG = f"{STATE}/certbot.pid", f"{STATE}/certbot.log"


def certonly_command(spec: Spec, name: str, domains: list[str]) -> StringCommand:
    """certbot's issuance of one certificate. Every spec value is quoted by pyinfra, never formatted into the
    command."""
    return StringCommand(
        "certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos", "--reuse-key",
        "--server", QuoteString(spec.tls.acme_directory), "-m", QuoteString(spec.acme_contact),
        "--cert-name", QuoteString(name), *(bit for domain in domains for bit in ("-d", QuoteString(domain))),
        "--preferred-challenges", "http-01")


def wanted_certificates(spec: Spec) -> dict[str, list[str]]:
    """{certificate name: its names}: the mail certificate's two slots (the host name alone, each with a key of its
    own, both in TLSA: `mailhost.rollover`) and the web names' certificates (`mailhost.web`)."""
    return {**{slot: [spec.hostname] for slot in rollover.slots(spec)}, **web.web_certificates(spec)}


RUNNING = f'[ -s {PID} ] && grep -qs certbot "/proc/$(cat {PID})/cmdline"'  # (a pid may be reused later)
RETRY_PAUSE = 10  # seconds between a failed issuance and its one retry
# The background job's `again`: run a command, and once more after a pause if it fails. certbot's standalone
# server answers one request at a time from a listen queue of 5; a CA that validates every name of a large
# certificate at once (Pebble: 3 requests a name, all names together) can leave a few of them unanswered
# past its timeout while the host is busy (seen in the lab: 4 of 100 names, Debian 12, during the stack's install).
# A CA that reuses valid authorizations (Let's Encrypt) validates only the failed names again.
AGAIN = ('again() { "$@" || { echo "mailhost: certbot failed; asking once more in '
         f'{RETRY_PAUSE} s"; sleep {RETRY_PAUSE}; "$@"; }}; }};')


def request_command(spec: Spec, certificates: dict[str, list[str]]) -> StringCommand:
    """Start the issuance of `certificates` in the background, one after the other (certbot's standalone
    server holds port 80), unless one still runs; its pid and output go under STATE. A certificate whose
    issuance fails is asked for once more (`AGAIN`); one that fails twice ends the job. With a private ACME CA,
    the system trusts it first, in the same background job (`certbot` talks to the CA over HTTPS): rebuilding
    the trust store takes over a second that the deploy need not wait for."""
    steps = [StringCommand("update-ca-certificates", ">/dev/null")] if spec.tls.ca_bundle else []
    steps += [StringCommand("again", certonly_command(spec, name, domains)) for name, domains in certificates.items()]
    job = StringCommand(AGAIN, *(bit for step in steps for bit in (step, "&&")))
    return StringCommand(
        f"mkdir -p {STATE} && if {RUNNING}; then :; else",
        "setsid", "sh", "-c", QuoteString(StringCommand(job, "true")), f">{LOG} 2>&1 </dev/null & echo $! >{PID}; fi")


def _some(names: list[str], shown: int = 4) -> str:
    """The first few of a certificate's names (a web certificate of 100 domains has 100 of them)."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def ready_command(spec: Spec, certificates: dict[str, list[str]], whole: bool = True) -> StringCommand:
    """Wait for the background issuance (`whole`), or only until `certificates` are there (the job goes on with
    the others); if one is missing, fail with certbot's last words and the names of each missing one."""
    paths = {name: QuoteString(f"/etc/letsencrypt/live/{name}/fullchain.pem") for name in certificates}
    files = [bit for path in paths.values() for bit in ("-s", path, "-a")][:-1]
    wait = (f"timeout 900 sh -c 'while {RUNNING}; do sleep 0.2; done'; rm -f {PID};" if whole else
            StringCommand("timeout 900 sh -c", QuoteString(StringCommand(
                f"while {RUNNING} && ! test", *files, "; do sleep 0.2; done")), ";"))
    missing = [StringCommand("test", "-s", path, "||", "echo", QuoteString(
        f"ACME: no certificate {name} for {_some(certificates[name])}"), ">&2;") for name, path in paths.items()]
    hint = "Do these names' A/AAAA (or CNAME) records point at this host, and is port 80 reachable?"
    return StringCommand(wait, "test", *files, f"|| {{ tail -n 20 {LOG} >&2;", *missing, "echo", QuoteString(hint),
                         ">&2; exit 1; }")


class Certificates(FactBase):
    """{certificate name: sorted names it covers} of every certbot certificate on the host."""

    def command(self) -> str:
        return ("for c in /etc/letsencrypt/live/*/cert.pem; do [ -f \"$c\" ] || continue; "
                "printf '%s ' \"$(basename \"$(dirname \"$c\")\")\"; "
                "openssl x509 -in \"$c\" -noout -ext subjectAltName | tail -n +2 | tr -d ' \\n'; echo; done")

    @staticmethod
    def default() -> dict[str, list[str]]:
        return {}

    def process(self, output: list[str]) -> dict[str, list[str]]:
        found = {}
        for line in output:
            name, _, names = line.partition(" ")
            found[name] = sorted(n[4:] for n in names.split(",") if n.startswith("DNS:"))
        return found


_missing: dict[str, dict[str, list[str]]] = {}


def missing_certificates(spec: Spec) -> dict[str, list[str]]:
    """The wanted certificates the host lacks, or holds for other names, when the run began: read once per host
    (`apply` and `ready` both ask, and pyinfra reads a fact again on every call)."""
    if host.name not in _missing:
        have = host.get_fact(Certificates)
        _missing[host.name] = {name: domains for name, domains in wanted_certificates(spec).items()
                               if have.get(name) != sorted(domains)}
    return _missing[host.name]


def has_certificate(spec: Spec) -> bool:
    """Whether the host had the mail certificate when the run began."""
    return spec.hostname not in missing_certificates(spec)


class HostTlsState(FactBase):
    """The slot in use, the key generation applied, when the standby key was published (`mailhost.rollover`)."""

    def command(self) -> str:
        return rollover.HOST_TLS_COMMAND

    def process(self, output: list[str]) -> rollover.HostTls:
        return rollover.HostTls.parse(output)


_tls: dict[str, tuple[rollover.HostTls, dict[str, str], rollover.Decision]] = {}


def host_tls(spec: Spec) -> tuple[rollover.HostTls, dict[str, str], rollover.Decision]:
    """The host's key state and keys as the run found them, and whether this run switches keys: read and decided
    once per host (`ready` and `mark_published` both ask)."""
    if host.name not in _tls:
        state, keys = host.get_fact(HostTlsState), read_once(TlsPublicKeys) or {}
        decision = rollover.decide(spec, state, keys, time.time(),
                                   lambda value: rollover.served_by_all_nameservers(spec, value))
        _tls[host.name] = (state, keys, decision)
    return _tls[host.name]


def rotating(spec: Spec) -> bool:
    """Whether this run changes the certificates' keys (a switch, or a new key owed since one): TLSA changes."""
    state, _, decision = host_tls(spec)
    return decision.rotate or bool(state.rekey)


def _slot_path(slot: str) -> QuoteString:
    return QuoteString(f"/etc/letsencrypt/live/{slot}")


def switch_command(spec: Spec, state: rollover.HostTls) -> StringCommand:
    """Point the services at the standby slot (atomically) and reload them; note the slot left as still to get
    a new key, and the generation as applied."""
    current = state.current or rollover.slots(spec)[0]
    return StringCommand(
        "ln", "-sfn", _slot_path(rollover.other(spec, current)), f"{rollover.CURRENT}.new", "&&",
        "mv", "-T", f"{rollover.CURRENT}.new", rollover.CURRENT, "&&", RELOAD_HOOK, "&&",
        "echo", QuoteString(current), ">", rollover.REKEY_FILE, "&&",
        "echo", str(spec.tls.key_generation), ">", rollover.GENERATION_FILE)


def rekey_command(slot: str) -> StringCommand:
    """A new key for the slot a switch left (certbot renews it with a fresh key, no random sleep)."""
    return StringCommand(
        "certbot", "renew", "--cert-name", QuoteString(slot), "--new-key", "--force-renewal",
        "--no-random-sleep-on-renew", "--non-interactive", "--quiet", "&&", "rm", "-f", rollover.REKEY_FILE)


def mark_command(standby: str) -> StringCommand:
    """Write when the standby key was published (its digest and the time), unless that key is marked already."""
    return StringCommand(
        "k=$(openssl pkey -in", QuoteString(f"/etc/letsencrypt/live/{standby}/privkey.pem"), "-pubout -outform DER",
        f"| sha256sum | cut -d' ' -f1) && {{ grep -qs \"^$k \" {rollover.PUBLISHED_FILE} ||",
        f"echo \"$k $(date +%s)\" > {rollover.PUBLISHED_FILE}; }}")


RELOAD_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mailhost-reload"

@deploy("certbot")
def apply(spec: Spec) -> None:
    if spec.tls.ca_bundle:
        ca = files.put(name="Private ACME CA is uploaded", src=str(spec.base_dir / spec.tls.ca_bundle), dest=CA_DEST,
                       mode="644")
        if has_certificate(spec):  # else the issuance below trusts it first
            server.shell(name="Private ACME CA is trusted", commands=["update-ca-certificates"],
                         _if=ca.did_change)
    config_file(__file__, RELOAD_HOOK, mode="755")
    if missing := missing_certificates(spec):
        server.shell(name=f"Certificates for {', '.join(missing)} are asked for (ACME HTTP-01, in the background)",
                     commands=[request_command(spec, missing)])
    unit(name="Renewal timer is active", service="certbot.timer", running=True, enabled=True)


def _in_use(spec: Spec, state: rollover.HostTls) -> str:
    """The slot whose certificate the services use (the first one on a fresh host or one from before the slots)."""
    return state.current if state.current in rollover.slots(spec) else rollover.slots(spec)[0]


def _waited_for(spec: Spec) -> tuple[str, bool]:
    """The slot whose certificate the services use, and whether `ready` waits for every certificate (a key
    rollover runs certbot there, and certbot runs one at a time)."""
    state, _, decision = host_tls(spec)
    return _in_use(spec, state), decision.rotate or state.rekey is not None


@deploy("certbot")
def ready(spec: Spec) -> None:
    """The certificate the services use exists (waiting for it, if `apply` asked for it); the others may still
    be on their way (`issued`), unless a key rollover runs certbot here (one certbot at a time)."""
    state, _, decision = host_tls(spec)
    in_use, whole = _waited_for(spec)
    missing = missing_certificates(spec)
    if needed := {name: domains for name, domains in missing.items() if whole or name == in_use}:
        server.shell(name=f"Certificates for {', '.join(needed)} are obtained",
                     commands=[ready_command(spec, needed, whole=whole or needed == missing)])
    if state.current not in rollover.slots(spec):  # a fresh host (or one from before the slots): its keys are new
        server.shell(name="The services use the first certificate slot", commands=[StringCommand(
            "mkdir", "-p", rollover.TLS_DIR, "&&", "ln", "-sfn", _slot_path(rollover.slots(spec)[0]), rollover.CURRENT,
            "&&", "echo", str(spec.tls.key_generation), ">", rollover.GENERATION_FILE)])
        return
    if decision.reason:
        host.log_styled(decision.reason, fg="yellow" if not decision.rotate else None, log_func=logger.warning)
    if decision.rotate:
        server.shell(name="Key rollover: the services switch to the standby key", commands=[switch_command(spec, state)])
    left = state.current if decision.rotate else state.rekey
    if left in rollover.slots(spec):
        server.shell(name=f"Key rollover: {left} gets a new key", commands=[rekey_command(left)])


@deploy("certbot")
def issued(spec: Spec, standby_only: bool = False) -> None:
    """Every certificate exists (nginx loads the web names'), or with `standby_only` the standby key's (its key
    goes into TLSA; the job makes it before the web names', which may still be on their way)."""
    in_use, whole = _waited_for(spec)
    if whole or not (missing := missing_certificates(spec)):
        return  # `ready` waited for them all
    standby = rollover.other(spec, in_use)
    web = {name: domains for name, domains in missing.items() if name not in (in_use, standby)}
    if standby_only:
        if standby in missing:
            server.shell(name=f"Certificate {standby} is obtained",
                         commands=[ready_command(spec, {standby: missing[standby]}, whole=not web)])
    elif web:
        server.shell(name=f"Certificates for {', '.join(web)} are obtained", commands=[ready_command(spec, missing)])


@deploy("certbot")
def mark_published(spec: Spec, dns_published) -> None:
    """After the DNS stage: note when the standby key's TLSA record was published (the rollover waits dns.ttl
    from then). Runs only when something may have changed it."""
    state, keys, decision = host_tls(spec)
    current = _in_use(spec, state)
    standby = current if decision.rotate else rollover.other(spec, current)  # after this run's switch, if any
    marked = not decision.rotate and not state.rekey and state.published is not None and standby in keys and \
        state.published[0] == rollover.key_digest(keys[standby])
    if not marked:
        server.shell(name="When the standby key was published is noted", commands=[mark_command(standby)])
    elif dns_published is not None:  # the DNS stage wrote: it may have republished the standby's record
        server.shell(name="When the standby key was published is noted", commands=[mark_command(standby)],
                     _if=dns_published.did_change)
