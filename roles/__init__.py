"""One pyinfra role per service, each of one shape: `packages(spec)`, what it needs installed, and `apply(spec)`,
a `@deploy` that configures and activates it (the base role installs every role's packages at once, the
firewall's and certbot's ahead of the rest so that the CA validates while the stack installs). A role
whose package asks debconf questions answers them in `PRESEED` (debconf-set-selections lines); one whose package
needs a file of its own there during the install names it in `PLACEHOLDERS` ({path: content}, written only where
missing, before that install)."""

from mailhost.spec import Spec


def _roles() -> tuple:
    from . import (base, certbot, dkim, dovecot, fail2ban, firewall, mta_sts_resolver, nginx, postfix, postsrsd,
                   resolver, rspamd)
    return base, resolver, firewall, certbot, dkim, rspamd, postsrsd, mta_sts_resolver, postfix, dovecot, fail2ban, nginx


def all_packages(spec: Spec) -> list[str]:
    """Every Debian package the roles need for `spec`: installed in one apt transaction (the firewall's and
    certbot's ahead of it, `roles.base.apply`)."""
    return sorted({package for role in _roles() for package in role.packages(spec)})


def all_preseeds() -> list[str]:
    """Every role's debconf answers, given to debconf before that transaction."""
    return [line for role in _roles() for line in getattr(role, "PRESEED", [])]


def all_placeholders() -> dict[str, str]:
    """Every role's files that must exist while the packages install (written only where missing)."""
    return {path: text for role in _roles() for path, text in getattr(role, "PLACEHOLDERS", {}).items()}
