"""Converge one mail host: `pyinfra inventory/<env>.py deploy.py`.

The inventory names each host's spec (host data `spec`); it is validated before pyinfra connects.
Stages: install the whole package set in one apt transaction, then configure and activate each
service in dependency order (the firewall opens 80 before certbot; the certificate exists before
Postfix and Dovecot use it).
"""

from pathlib import Path

from pyinfra import host

from mailhost.spec import load_spec
from roles import all_packages, base, certbot, dovecot, fail2ban, firewall, opendkim, postfix, rspamd

spec_path = Path(host.data.spec)
spec = load_spec(spec_path)

base.apply(spec, all_packages(spec))
firewall.apply(spec)
certbot.apply(spec, spec_path.parent)
opendkim.apply(spec)
rspamd.apply(spec)
dovecot.apply(spec, spec_path.parent)
postfix.apply(spec)
fail2ban.apply(spec)
