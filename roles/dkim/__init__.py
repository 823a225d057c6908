"""DKIM keys: one per domain and selector, RSA and Ed25519 (RFC 8463), made on the host; rspamd signs with them.

Keys never leave the host (0600, owned by rspamd's user) and a re-run never regenerates one. RSA keys are PEM;
Ed25519 keys are what rspamd loads: base64 of the 32-byte seed and the 32-byte public key, on one line. The
public halves are a fact (`DkimPublicKeys`) for the DNS stage.

Hosts that mailhost set up before rspamd signed have their RSA keys in OpenDKIM's directory: each is moved here
under its own name (the published key stays valid), and OpenDKIM is removed once Postfix no longer uses it.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation

from mailhost import hostinfo
from mailhost.spec import Spec

KEY_DIR, OWNER = hostinfo.DKIM_KEY_DIR, hostinfo.DKIM_KEY_OWNER
key_path = hostinfo.dkim_key_path
OPENDKIM_KEY_DIR = "/etc/opendkim/keys"  # where mailhost kept RSA keys while OpenDKIM signed


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["openssl"]


def signing_keys(spec: Spec) -> list[tuple[str, str, str]]:
    """(domain, selector, algorithm) of every key the spec signs with."""
    return sorted((d.name, s, a) for d in spec.domains for s, a in spec.dkim_keys(d))


class DkimPublicKeys(FactBase):
    """{(domain, selector, algorithm): base64 public key} for every key on the host."""

    def command(self) -> str:
        return hostinfo.DKIM_PUBLIC_KEYS

    def process(self, output: list[str]) -> dict[tuple[str, str, str], str]:
        return hostinfo.parse_dkim_public_keys(output)


class DkimKeyFiles(FactBase):
    """{path: "mode user group"} of the key directory, its domain directories and their keys, and of the RSA
    keys OpenDKIM's directory still holds."""

    def command(self) -> str:
        return (f"find {KEY_DIR} -maxdepth 2 \\( -type d -o -name '*.rsa' -o -name '*.ed25519' \\) "
                f"-printf '%p %m %u %g\\n' 2>/dev/null; "
                f"find {OPENDKIM_KEY_DIR} -mindepth 2 -maxdepth 2 -name '*.private' -printf '%p %m %u %g\\n' "
                "2>/dev/null || true")

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


# How each algorithm's key is made into "$t/key" ($t: its scratch directory; $bits: the RSA key size).
_MAKE = {
    "rsa": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:\"$bits\" -out \"$t/key\" 2>/dev/null",
    # PKCS#8 DER of an Ed25519 key ends with the seed; its SubjectPublicKeyInfo with the public key.
    "ed25519": "openssl genpkey -algorithm ed25519 -outform DER -out \"$t/der\" && { tail -c 32 \"$t/der\"; "
               "openssl pkey -inform DER -in \"$t/der\" -pubout -outform DER | tail -c 32; } "
               "| base64 -w0 > \"$t/key\" && rm -f \"$t/der\"",
}


def make_keys_command(missing: list[tuple[str, str, str]], bits: int) -> StringCommand:
    """One job per key, as many at once as the host has cores; each key made in a scratch directory and
    renamed into place, so an interrupted run leaves no half key. An RSA key OpenDKIM has under the same domain
    and selector is taken over rather than made (its record is published already). Names reach the shell quoted
    (validated names, quoted all the same)."""
    jobs = [QuoteString(f"{d}/{s}/{a}") for d, s, a in missing]
    take_over = f"[ \"$a\" = rsa ] && [ -f \"{OPENDKIM_KEY_DIR}/$d/$s.private\" ]"
    script = (f"d=${{1%%/*}}; rest=${{1#*/}}; s=${{rest%/*}}; a=${{rest#*/}}; t=$(mktemp -d {KEY_DIR}/.new.XXXXXX); "
              f"if {take_over}; then cp \"{OPENDKIM_KEY_DIR}/$d/$s.private\" \"$t/key\"; "
              f"elif [ \"$a\" = rsa ]; then bits={int(bits)}; {_MAKE['rsa']}; else {_MAKE['ed25519']}; fi; "
              f"install -d -m 750 -o {OWNER} -g {OWNER} \"{KEY_DIR}/$d\"; "
              f"chown {OWNER}:{OWNER} \"$t/key\"; chmod 600 \"$t/key\"; "
              f"mv \"$t/key\" \"{KEY_DIR}/$d/$s.$a\"; rm -rf \"$t\"")
    return StringCommand(
        f"install -d -m 750 -o {OWNER} -g {OWNER} {KEY_DIR} && rm -rf {KEY_DIR}/.new.* && for job in", *jobs,
        "; do echo \"$job\"; done | xargs -P $(nproc) -I JOB sh -ec", QuoteString(script), "sh JOB")


@operation(is_idempotent=True)
def signing_keys_exist(keys: list[tuple[str, str, str]], bits: int):
    """Every (domain, selector, algorithm) has its key, made on the host; directories 0750 and keys 0600, owned
    by rspamd's user. One operation for all domains: a key is a few hundred ms of CPU at most, made in
    parallel."""
    present = host.get_fact(DkimKeyFiles)
    wanted = {KEY_DIR: "750", **{f"{KEY_DIR}/{d}": "750" for d, _, _ in keys},
              **{key_path(*key): "600" for key in keys}}
    missing = [key for key in keys if key_path(*key) not in present]
    if missing:
        yield make_keys_command(missing, bits)
    wrong = [path for path, mode in wanted.items() if path in present and present[path] != f"{mode} {OWNER} {OWNER}"]
    for path in wrong:
        yield StringCommand(f"chown {OWNER}:{OWNER}", QuoteString(path), "&& chmod", wanted[path], QuoteString(path))
    if not missing and not wrong:
        host.noop("every DKIM key exists, private to rspamd")


class OpenDkimInstalled(FactBase):
    """Whether OpenDKIM (which signed before rspamd did) or the keys mailhost gave it are still on the host."""

    def command(self) -> str:
        return (f"dpkg-query -W -f '${{db:Status-Abbrev}}\\n' opendkim opendkim-tools 2>/dev/null | grep -q '^.i' "
                f"|| [ -d {OPENDKIM_KEY_DIR} ] && echo yes || echo no")

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


@operation(is_idempotent=True)
def opendkim_removed():
    """OpenDKIM, its config and its copies of the keys are gone, once Postfix no longer sends it mail."""
    if not host.get_fact(OpenDkimInstalled):
        host.noop("OpenDKIM is not installed")
        return
    yield "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q opendkim opendkim-tools"
    yield "rm -rf /etc/opendkim"


@deploy("dkim")
def apply(spec: Spec) -> None:
    signing_keys_exist(name="DKIM keys are made on the host, private to rspamd", keys=signing_keys(spec),
                       bits=spec.dkim.key_bits)


@deploy("dkim")
def retire_opendkim() -> None:
    opendkim_removed(name="OpenDKIM is gone (rspamd signs)")
