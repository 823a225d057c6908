"""OpenDKIM: signs mail submitted by our users, one key per domain and selector.

Keys are generated on the host and never leave it (0600, owned by opendkim); a re-run never
regenerates an existing key. The public halves are a fact (`DkimPublicKeys`) for the DNS stage.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from mailhost import hostinfo
from mailhost.spec import Spec
from roles._config import config_file


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["opendkim", "opendkim-tools"]


KEY_DIR = hostinfo.DKIM_KEY_DIR


def key_path(domain: str, selector: str) -> str:
    return f"{KEY_DIR}/{domain}/{selector}.private"


def signing_keys(spec: Spec) -> list[tuple[str, str]]:
    return sorted((d.name, s) for d in spec.domains for s in spec.selectors(d))


class DkimPublicKeys(FactBase):
    """{(domain, selector): base64 SubjectPublicKeyInfo} for every key on the host."""

    def command(self) -> str:
        return hostinfo.DKIM_PUBLIC_KEYS

    def process(self, output: list[str]) -> dict[tuple[str, str], str]:
        return hostinfo.parse_dkim_public_keys(output)


class DkimKeyFiles(FactBase):
    """{path: "mode user group"} of the key directory, its domain directories and their keys."""

    def command(self) -> str:
        return f"find {KEY_DIR} -maxdepth 2 \\( -type d -o -name '*.private' \\) -printf '%p %m %u %g\\n' 2>/dev/null || true"

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


def make_keys_command(missing: list[tuple[str, str]], bits: int) -> StringCommand:
    """One job per key, as many at once as the host has cores; each key made in a scratch directory and
    renamed into place. Domain and selector reach the shell quoted (validated names, quoted all the same)."""
    jobs = [QuoteString(f"{d}/{s}") for d, s in missing]
    return StringCommand(
        f"install -d -m 750 -o opendkim -g opendkim {KEY_DIR} && rm -rf {KEY_DIR}/.new.* && for job in", *jobs,
        f"; do echo \"$job\"; done | xargs -P $(nproc) -I JOB sh -ec 'd=${{1%/*}}; s=${{1#*/}}; "
        f"t=$(mktemp -d {KEY_DIR}/.new.XXXXXX); opendkim-genkey -b {int(bits)} -h sha256 -d \"$d\" -s \"$s\" "
        f"-D \"$t\"; install -d -m 750 -o opendkim -g opendkim \"{KEY_DIR}/$d\"; "
        f"chown opendkim:opendkim \"$t/$s.private\"; chmod 600 \"$t/$s.private\"; "
        f"mv \"$t/$s.private\" \"{KEY_DIR}/$d/$s.private\"; rm -rf \"$t\"' sh JOB")


@operation(is_idempotent=True)
def signing_keys_exist(keys: list[tuple[str, str]], bits: int):
    """Every (domain, selector) has its key, made on the host; directories 0750 and keys 0600, owned by
    opendkim. One operation for all domains: a key is a few hundred ms of CPU, made in parallel, and
    renamed into place when whole, so an interrupted run leaves no half key."""
    present = host.get_fact(DkimKeyFiles)
    wanted = {KEY_DIR: "750", **{f"{KEY_DIR}/{d}": "750" for d, _ in keys}, **{key_path(d, s): "600" for d, s in keys}}
    missing = [(d, s) for d, s in keys if key_path(d, s) not in present]
    if missing:
        yield make_keys_command(missing, bits)
    wrong = [path for path, mode in wanted.items()
             if path in present and present[path] != f"{mode} opendkim opendkim"]
    for path in wrong:
        yield StringCommand("chown opendkim:opendkim", QuoteString(path), "&& chmod", wanted[path], QuoteString(path))
    if not missing and not wrong:
        host.noop("every DKIM key exists, private to opendkim")


@deploy("opendkim")
def apply(spec: Spec) -> None:
    keys = signing_keys(spec)
    signing_keys_exist(name="DKIM keys are made on the host, private to opendkim", keys=keys, bits=spec.dkim.key_bits)
    tables = [
        config_file(__file__, "/etc/opendkim/key.table", keys=keys, key_path=key_path),
        config_file(__file__, "/etc/opendkim/signing.table", keys=keys),
        config_file(__file__, "/etc/opendkim.conf", check="opendkim -n -x {path}"),
    ]
    # Restart (only if running) before start: a stopped service starts once, with the new config.
    systemd.service(name="OpenDKIM restarts for new config", service="opendkim", restarted=True,
                    _if=any_changed(*tables))
    systemd.service(name="OpenDKIM is running", service="opendkim", running=True, enabled=True)
