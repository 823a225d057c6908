"""One pyinfra role per service, each of one shape: `packages(spec)`, what it needs installed, and `apply(spec)`,
a `@deploy` that configures and activates it (the base role installs every role's packages at once)."""

from mailhost.spec import Spec


def all_packages(spec: Spec) -> list[str]:
    """Every Debian package the roles need for `spec`: installed in one apt transaction."""
    from . import base, certbot, dovecot, fail2ban, firewall, opendkim, postfix, rspamd
    return sorted({package for role in (base, firewall, certbot, opendkim, rspamd, postfix, dovecot, fail2ban)
                   for package in role.packages(spec)})
