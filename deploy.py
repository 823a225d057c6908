"""Converge one mail host (Debian 13 or 12): `pyinfra inventory/<env>.py deploy.py`.

The inventory names each host's spec (host data `spec`); it is validated before pyinfra connects.
Stages: install the firewall, the ACME client and rspamd, then the rest of the package set in one apt transaction,
then configure and activate each service in dependency order. DNS comes first, so the host name resolves
before anything looks it up (package scripts, certbot's HTTP-01 challenge). The DKIM keys the run needs are
made in the background while the packages install (100 domains' RSA keys take ~25 s of CPU on the lab
machine; the dkim role takes them). The firewall opens 80 before certbot, and certbot's issuance (mostly
waiting for the CA, one certificate after the other) runs in the background while the stack installs
(certbot looks the CA up through the resolver the host had): the certificate Dovecot and Postfix use comes
first, then the standby key's and the web names', each mostly there before a service needs it. The DKIM keys
and the certificates' keys (TLSA) are published once those exist, while the CA still validates the web names
(asked for last; 200 names with 100 domains), which nginx needs. rspamd comes last: its package, installed
ahead of the stack, starts it, and that first start compiles pattern caches (~10 s of CPU) while the stack
installs and the other services go on; its restart with our config waits for that if need be (Postfix accepts
mail meanwhile: milter_default_action = accept). Restarted any
earlier, it found the first start's regexp caches unfinished, compiled them anew after the restart, and its
main process loaded them after rspamd-trim had run. After the last operation,
`mailhost verify` checks the host from outside and prints its report; errors make the run exit
non-zero.
"""

from pathlib import Path

from pyinfra import host

from mailhost.spec import load_spec
from roles import (base, certbot, dkim, dovecot, fail2ban, firewall, mta_sts_resolver, nginx, postfix, postsrsd,
                   resolver, rspamd)
from stages import dns, verify
from roles._connection import send_without_delay
from roles._release import require_supported

spec_path = Path(host.data.spec)
spec = load_spec(spec_path)
send_without_delay()
require_supported()  # Debian 13 or 12 on amd64, read from the host; anything else stops here, before any change

dns_pending = dns.publish(spec)
dkim.make_ahead(spec)  # the keys this run makes, in the background while the packages install
ahead = firewall.packages(spec) + certbot.packages(spec) + rspamd.packages_ahead(spec)
base.apply(spec, first=ahead)  # host name, package lists, then these: what they start overlaps the stack's install
firewall.apply(spec)  # port 80 open for the CA's HTTP-01 check
certbot.apply(spec)  # asks for the certificates in the background: the CA validates while the stack installs
base.install(spec)  # the rest of the stack, in one apt transaction
resolver.apply(spec)  # the host's own validating resolver, before the services that look names up start
dkim.apply(spec)  # the keys rspamd signs with
fail2ban.apply(spec)
certbot.ready(spec)  # the certificate Dovecot and Postfix use (and a key rollover the spec asks for happens here)
dovecot.apply(spec)
postsrsd.apply(spec)  # before Postfix asks it to rewrite forwarded mail's senders
mta_sts_resolver.apply(spec)  # the policy map Postfix asks before sending
postfix.apply(spec)
dkim.retire_opendkim()  # (hosts set up when OpenDKIM signed) now that Postfix no longer uses it
certbot.issued(spec, standby_only=True)  # issued meanwhile: the standby key's, for TLSA
published = dns.publish_keys(spec, dns_pending or certbot.rotating(spec) or dkim.rotating(spec))  # DKIM, TLSA
certbot.mark_published(spec, published)  # when the standby key's TLSA went out: the next rollover waits from then
dkim.mark_published(spec)  # when new DKIM keys went out: a rotation to them waits from then
certbot.issued(spec)  # the web names' (100 domains: 200 names, the CA's longest work), issued meanwhile
nginx.apply(spec)  # MTA-STS policy and client autoconfig over HTTPS (the web names' certificates exist now)
rspamd.apply(spec)  # last: its package's first start may still be compiling (the docstring above says why)
if host.data.get("verify", True):  # `--data verify=false` skips the report (e.g. to time the host stage alone)
    verify.apply(spec)
