"""What the spec means for the mail servers' lookup tables (pure functions, sorted output).

Sorted and deterministic: pyinfra compares rendered files, so a stable order is what keeps
a re-run free of changes.
"""

from __future__ import annotations


from .passwords import password_hash
from .spec import Spec


def virtual_mailboxes(spec: Spec) -> list[tuple[str, str]]:
    """Postfix virtual_mailbox_maps: which recipients exist."""
    return sorted((box.address, "OK") for box in spec.mailboxes)


def virtual_aliases(spec: Spec) -> list[tuple[str, str]]:
    """Postfix virtual_alias_maps. Mailboxes map to themselves so a catch-all never swallows them; postmaster@
    and abuse@ go to a mailbox where the spec routes them nowhere."""
    rows = [(a.source, ",".join(a.destinations)) for a in spec.aliases] + list(spec.role_aliases.items())
    if any(a.source.startswith("@") for a in spec.aliases):
        rows += [(box.address, box.address) for box in spec.mailboxes]
    return sorted(rows)


def sender_logins(spec: Spec) -> list[tuple[str, str]]:
    """Postfix smtpd_sender_login_maps: who may use which envelope sender.

    A user may send as their own address and as any alias (or catch-all) that delivers to them.
    """
    owners: dict[str, set[str]] = {box.address: {box.address} for box in spec.mailboxes}
    ours = set(owners)
    for alias in spec.aliases:
        mine = {d for d in alias.destinations if d in ours}
        if mine:
            owners.setdefault(alias.source, set()).update(mine)
    return sorted((address, ",".join(sorted(users))) for address, users in owners.items())


def dovecot_users(spec: Spec) -> list[tuple[str, str, int]]:
    """Dovecot's users: (address, scheme-prefixed hash, quota in bytes). The users template writes them as
    passwd-file lines in the installed Dovecot's syntax."""
    return [(box.address, password_hash(box, spec.base_dir), box.quota or spec.limits.default_quota)
            for box in sorted(spec.mailboxes, key=lambda b: b.address)]
