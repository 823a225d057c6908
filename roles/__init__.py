"""One pyinfra role per service. Each role's `apply()` is a `@deploy` in install -> configure -> activate order."""

from mailhost.spec import Spec


def all_packages(spec: Spec) -> list[str]:
    """Every Debian package the roles need for `spec`: installed in one apt transaction."""
    from . import base, certbot, dovecot, fail2ban, firewall, opendkim, postfix, rspamd
    return sorted(set(base.PACKAGES + firewall.PACKAGES + certbot.PACKAGES + opendkim.PACKAGES + rspamd.PACKAGES
                      + postfix.PACKAGES + dovecot.packages(spec) + fail2ban.PACKAGES))
