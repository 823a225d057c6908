"""Config files that are validated before they replace the live ones.

A template is rendered to a staged copy under /var/lib/mailhost/staged/<dest>; only if the
service's own checker accepts the staged copy is it installed over <dest>. A running service
that re-reads its config (Postfix spawns new smtpd processes all the time) never sees a bad one.
The staged copy also makes drift visible: if <dest> no longer matches it, or its mode or owner
changed, it is reinstalled (`install` sets content, mode and owner in one command).
"""

from __future__ import annotations

from pathlib import Path

import hashlib
from io import StringIO
from typing import NamedTuple

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.api.util import get_template
from pyinfra.operations import server

from mailhost import hostinfo, tables

STAGING = "/var/lib/mailhost/staged"


class FileState(NamedTuple):
    staged: str  # sha256 of the staged copy
    live: str | None  # sha256 of the live file (None: missing)
    owner: str | None  # "mode user group" of the live file


class ConfigFiles(FactBase):
    """{live path: FileState} for every staged config file: the drift of all of them read in one command of
    three processes, rather than three facts (three round trips) per file. Our paths hold no spaces."""

    def command(self) -> str:
        return (f"cd {STAGING} 2>/dev/null || exit 0; set -- $(find . -type f -printf '%P '); "
                "[ $# -gt 0 ] || exit 0; sha256sum -- \"$@\" | sed 's/^/S /'; cd / || exit 0; "
                "sha256sum -- \"$@\" 2>/dev/null | sed 's/^/L /'; stat -c 'M %a %U %G %n' -- \"$@\" 2>/dev/null; true")

    @staticmethod
    def default() -> dict[str, FileState]:
        return {}

    def process(self, output: list[str]) -> dict[str, FileState]:
        staged, live, owner = {}, {}, {}
        for line in output:
            kind, rest = line.split(" ", 1)
            if kind == "M":
                mode, user, group, path = rest.split(" ", 3)
                owner["/" + path] = f"{mode} {user} {group}"
            else:
                digest, path = rest.split("  ", 1)
                (staged if kind == "S" else live)["/" + path] = digest
        return {path: FileState(digest, live.get(path), owner.get(path)) for path, digest in staged.items()}


_read: dict[str, dict[str, FileState]] = {}


def config_files() -> dict[str, FileState]:
    """The ConfigFiles fact as the run found it, read once per host (pyinfra reads a fact again on each call)."""
    if host.name not in _read:
        _read[host.name] = host.get_fact(ConfigFiles)
    return _read[host.name]


def template_path(role_file: str, dest: str) -> str:
    """roles/<role>/templates mirrors target paths: /etc/postfix/main.cf -> templates/etc/postfix/main.cf.j2."""
    return str(Path(role_file).parent / "templates" / (dest.lstrip("/") + ".j2"))


def render(src: str, **context) -> str:
    """A role template rendered; every template may use the table writers (`tables.key_value`, ...) and the
    host's shared names (`hostinfo.RSPAMD_MILTER`, ...)."""
    return get_template(src).render({"host": host, "tables": tables, "hostinfo": hostinfo, **context})


@operation()
def rendered(src: str, path: str, known: str | None, **context):
    """The template `src` rendered to `path` (0600, in the root-only staging tree), uploaded only when its
    content differs from `known`, the digest the ConfigFiles fact read: a file needs no facts of its own."""
    content = render(src, **context)
    if hashlib.sha256(content.encode()).hexdigest() == known:
        host.noop(f"{path} is rendered")
        return
    yield StringCommand("install", "-d", "-m", "700", STAGING, "&&", "mkdir", "-p", QuoteString(str(Path(path).parent)))
    yield FileUploadCommand(StringIO(content), path)
    yield StringCommand("chmod", "600", QuoteString(path))


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
        state = config_files().get(dest)
        self.stage = rendered(name=f"Render {dest}", src=template_path(role_file, dest), path=self.staged,
                              known=state.staged if state else None, **context)
        self.drifted = state is None or state.live != state.staged or state.owner != f"{int(mode)} {user} {group}"

    def install(self, check: str | StringCommand | None = None):
        """Install if the rendered content changed or the live file drifted (content, mode, owner); `check`
        must pass first: a command string ({path}, {dir}: the staged copy), or a StringCommand taken as it is
        (one that carries spec values, quoted)."""
        if isinstance(check, str):
            check = check.format(path=self.staged, dir=str(Path(self.staged).parent))
        commands = ([f"touch -d @$(($(date +%s) - 2)) {self.staged}"] if self.backdated else []) + (
            [check] if check else []) + [
            f"install -D {'-p ' if self.backdated else ''}-m {self.mode} -o {self.user} -g {self.group} "
            f"{self.staged} {self.dest}"]
        return server.shell(name=f"Install {self.dest}" + (" (validated)" if check else ""), commands=commands,
                            _if=None if self.drifted else self.stage.did_change)


def config_file(role_file: str, dest: str, *, check: str | StringCommand | None = None, **kwargs):
    """Render `dest` from its role template, validate it with `check` ({path} = staged file), install it.

    Returns the install operation: its `did_change()` tells whether the live file changed.
    """
    return StagedConfig(role_file, dest, **kwargs).install(check)
