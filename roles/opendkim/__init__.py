"""OpenDKIM: signs mail submitted by our users, one key per domain and selector.

Keys are generated on the host and never leave it (0600, owned by opendkim); a re-run never
regenerates an existing key. The public halves are a fact (`DkimPublicKeys`) for the DNS stage.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mailhost import hostinfo
from mailhost.spec import Spec
from roles._config import config_file

PACKAGES = ["opendkim", "opendkim-tools"]
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


@deploy("opendkim")
def apply(spec: Spec) -> None:
    files.directory(name="DKIM key directory", path=KEY_DIR, user="opendkim", group="opendkim", mode="750")
    for domain, selector in signing_keys(spec):
        path = key_path(domain, selector)
        files.directory(name=f"{domain} key directory", path=f"{KEY_DIR}/{domain}", user="opendkim",
                        group="opendkim", mode="750")
        if host.get_fact(File, path=path) is None:
            server.shell(name=f"DKIM key {selector}._domainkey.{domain} is generated on the host",
                         commands=[f"opendkim-genkey -b {spec.dkim.key_bits} -h sha256 -d {domain} -s {selector} "
                                   f"-D {KEY_DIR}/{domain}", f"rm -f {KEY_DIR}/{domain}/{selector}.txt"])
        files.file(name=f"DKIM key {selector}._domainkey.{domain} is private", path=path, user="opendkim",
                   group="opendkim", mode="600")
    keys = signing_keys(spec)
    tables = [
        config_file(__file__, "/etc/opendkim/key.table", keys=keys, key_path=key_path),
        config_file(__file__, "/etc/opendkim/signing.table", keys=keys),
        config_file(__file__, "/etc/opendkim.conf", check="opendkim -n -x {path}"),
    ]
    systemd.service(name="OpenDKIM is running", service="opendkim", running=True, enabled=True)
    systemd.service(name="OpenDKIM restarts for new config", service="opendkim", restarted=True,
                    _if=any_changed(*tables))
