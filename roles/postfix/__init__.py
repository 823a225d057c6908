"""Postfix: 25 inbound (STARTTLS, postscreen), 587 submission (STARTTLS + AUTH required), 465 submissions
(implicit TLS); SASL through Dovecot, virtual domains delivered to Dovecot over LMTP, sender spoof
protection, and rspamd on everything (it signs submitted mail with DKIM)."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from mailhost import maps
from mailhost.spec import Spec
from roles._config import StagedConfig, config_file
from roles._units import unit
from roles.certbot import live_dir


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["postfix"]


# Debian's postinst otherwise writes a main.cf of its own, setting each value with its own `postconf -e`
# (5-6 s of the install): ours replaces that file anyway. Applied only when packages are installed.
PRESEED = ["postfix postfix/main_mailer_type select No configuration"]

# ...which leaves no main.cf, and without one every `postconf` ends in a fatal error after Postfix's one-second
# pause. The package's systemd generator (postfix-instance-generator) runs `postconf` on each daemon-reload, and
# on Debian 12 every later package's postinst reloads systemd: about 20 s of the install, and a second per reload
# after it until `apply` writes the real file. So an empty one (Postfix's defaults) is there before the install.
PLACEHOLDERS = {"/etc/postfix/main.cf": "# mailhost: Postfix's defaults until the postfix role writes this file\n"}

# The local alias table (main.cf's alias_maps), which that postinst would have made: Debian's default,
# written only where the file is missing, so an admin's own aliases stay.
ALIASES = "/etc/aliases"
DEFAULT_ALIASES = "# See man 5 aliases for format\npostmaster:    root\n"


MAPS = {
    "/etc/postfix/virtual_mailboxes": maps.virtual_mailboxes,
    "/etc/postfix/virtual_aliases": maps.virtual_aliases,
    "/etc/postfix/sender_logins": maps.sender_logins,
}


class LookupTables(FactBase):
    """{path: "missing" | "stale"} for those of the given tables whose .db is missing or older than the table
    (a run cut off between writing a table and building it leaves it stale); up-to-date ones are left out."""

    def command(self, paths: list[str]) -> str:
        return (f"for f in {' '.join(paths)}; do if [ ! -e $f ]; then echo missing $f; "
                "elif [ ! -e $f.db ] || [ $f -nt $f.db ]; then echo stale $f; fi; done")

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return {path: state for state, path in (line.split(" ", 1) for line in output)}


@deploy("postfix")
def apply(spec: Spec) -> None:
    # main.cf first: postmap and newaliases read it. Both files staged first: postconf checks them together.
    main = StagedConfig(__file__, "/etc/postfix/main.cf", spec=spec, tls=live_dir(spec), backdated=True)
    master = StagedConfig(__file__, "/etc/postfix/master.cf", spec=spec)
    check = ("{{ postconf -c {dir} -n; postconf -c {dir} -M; }} >/dev/null 2>{dir}/check.err; "
             "! grep -i -e warning -e fatal {dir}/check.err")
    changed = [main.install(check), master.install(check)]
    tables = host.get_fact(LookupTables, paths=[*MAPS, ALIASES])
    for path, rows in MAPS.items():
        table = config_file(__file__, path, rows=rows(spec))
        # Rebuilt when the table changed, or was left unbuilt.
        server.shell(name=f"postmap {path}", commands=[f"postmap hash:{path}"],
                     _if=None if path in tables else table.did_change)
        changed.append(table)
    if tables.get(ALIASES) == "missing":
        files.put(name=f"{ALIASES} (Debian's default)", src=StringIO(DEFAULT_ALIASES), dest=ALIASES, mode="644")
    if ALIASES in tables:
        changed.append(server.shell(name=f"newaliases ({ALIASES})", commands=["newaliases"]))
    server.shell(name="Postfix installation is consistent", commands=["postfix check"], _if=any_changed(*changed))
    unit(name="Postfix reloads its config", service="postfix.service", reloaded=True,
         _if=any_changed(*changed))  # only if running; a stopped Postfix starts below
    unit(name="Postfix is running", service="postfix.service", running=True, enabled=True)
