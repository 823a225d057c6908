"""One writer per line-based file format that no checker reads before the service does: Postfix's lookup
tables, Dovecot's passwd-file, strings in rspamd's UCL config, and values of files `sh` sources.

Each refuses a value that would change the file's structure (a line break, whitespace inside a key, a
leading `#`, a field separator) rather than write it. The spec refuses such values first; these writers are
the last line, so that a value which slipped past it stops the run (templates render before anything
changes) instead of silently splitting a line on the host.
"""

from __future__ import annotations

from mailhost.spec.values import control_free, shown


class TableError(ValueError):
    """A value that cannot be written to a table file as one field."""


def _word(value: str, what: str, separators: str = "") -> str:
    """`value` as one field: not empty, no whitespace or control characters, none of `separators`."""
    if not value or not control_free(value) or any(c.isspace() or c in separators for c in value):
        extra = f", or any of {separators!r}" if separators else ""
        raise TableError(f"{what} {shown(value)} cannot be written as one table field (it must not be empty, "
                         f"or hold whitespace or control characters{extra})")
    return value


def key_value(key: str, value: str) -> str:
    """One line of a whitespace-separated key/value table: Postfix's postmap source (a line starting with `#`
    is a comment, one starting with whitespace continues the line before)."""
    if key.startswith("#"):
        raise TableError(f"table key {shown(key)} would be read as a comment")
    return f"{_word(key, 'table key')} {_word(value, 'table value')}"


def passwd_entry(user: str, password: str, *extra_fields: str) -> str:
    """One line of Dovecot's passwd-file: `user:password:uid:gid:gecos:home:shell:extra fields`, the first
    six fields `:`-separated (uid to shell left empty: the userdb defaults), the extras space-separated."""
    fields = (_word(user, "passwd-file user", ":"), _word(password, "passwd-file password", ":"))
    return ":".join(fields) + "::::::" + " ".join(_word(extra, "passwd-file extra field") for extra in extra_fields)


def ucl_string(value: str) -> str:
    """A double-quoted string of rspamd's UCL config: nothing that ends it (`"`), escapes (`\\`) or expands
    (`$`, UCL's variables) inside."""
    return '"' + _word(value, "rspamd config string", '"\\$') + '"'


def shell_word(value: str) -> str:
    """A value of a file `sh` sources (/etc/default/*), single-quoted: no quote to end it, no line to split."""
    return "'" + _word(value, "shell value", "'") + "'"
