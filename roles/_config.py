"""Config files that are validated before they replace the live ones.

A template is rendered to a staged copy under /var/lib/mailhost/staged/<dest>; only if the
service's own checker accepts the staged copy is it installed over <dest>. A running service
that re-reads its config (Postfix spawns new smtpd processes all the time) never sees a bad one.
The staged copy also makes drift visible: if <dest> no longer matches it, it is reinstalled.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

STAGING = "/var/lib/mailhost/staged"


def template_path(role_file: str, dest: str) -> str:
    """roles/<role>/templates mirrors target paths: /etc/postfix/main.cf -> templates/etc/postfix/main.cf.j2."""
    return str(Path(role_file).parent / "templates" / (dest.lstrip("/") + ".j2"))


class StagedConfig:
    """A config file rendered to its staged copy; `install()` validates and installs it.

    Two steps, so that files checked together (Postfix's main.cf and master.cf) are all staged first.
    """

    def __init__(self, role_file: str, dest: str, *, mode: str = "644", user: str = "root", group: str = "root",
                 backdated: bool = False, **context):
        """`backdated`: the file gets a modification time 2 s in the past, for readers that wait while a
        file is "hot" (Postfix rereads main.cf until it is 2 s old: 2.4 s per `postconf` after a write)."""
        self.dest, self.mode, self.user, self.group, self.backdated = dest, mode, user, group, backdated
        self.staged = f"{STAGING}{dest}"
        self.stage = files.template(name=f"Render {dest}", src=template_path(role_file, dest), dest=self.staged,
                                    mode="600", **context)
        self.drifted = host.get_fact(Sha256File, path=dest) != host.get_fact(Sha256File, path=self.staged)

    def install(self, check: str | None = None):
        """Install if rendered content changed or the live file drifted; `check` ({path}, {dir}) must pass first."""
        commands = ([f"touch -d @$(($(date +%s) - 2)) {self.staged}"] if self.backdated else []) + (
            [check.format(path=self.staged, dir=str(Path(self.staged).parent))] if check else []) + [
            f"install -D {'-p ' if self.backdated else ''}-m {self.mode} -o {self.user} -g {self.group} "
            f"{self.staged} {self.dest}"]
        op = server.shell(name=f"Install {self.dest}" + (" (validated)" if check else ""), commands=commands,
                          _if=None if self.drifted else self.stage.did_change)
        # Mode and owner drift, independent of content (a no-op when they are right).
        files.file(name=f"{self.dest} is {self.mode} {self.user}:{self.group}", path=self.dest, mode=self.mode,
                   user=self.user, group=self.group)
        return op


def config_file(role_file: str, dest: str, *, check: str | None = None, **kwargs):
    """Render `dest` from its role template, validate it with `check` ({path} = staged file), install it.

    Returns the install operation: its `did_change()` tells whether the live file changed.
    """
    return StagedConfig(role_file, dest, **kwargs).install(check)
