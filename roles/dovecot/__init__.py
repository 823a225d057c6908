"""Dovecot: IMAP (143 STARTTLS, 993), LMTP delivery from Postfix, the SASL socket for Postfix,
passwd-file users with strong hashes, quotas, sieve (spam into Junk; moving mail into or out of Junk teaches
rspamd), optional POP3/ManageSieve.

Debian 13 ships Dovecot 2.4, Debian 12 Dovecot 2.3: the same settings in two configuration languages,
one template with a `v24` branch where they differ. The mail store, its paths and the users file's
hashes are the same in both, so an upgraded host keeps its mail; a systemd drop-in lets Debian's own
12 -> 13 upgrade finish while the config is still 2.3's (see its template)."""

from __future__ import annotations


from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mailhost import maps
from mailhost.spec import Spec
from roles._config import config_file
from roles._release import debian_release
from roles._units import unit
from roles.certbot import live_dir

VMAIL_UID = 5000
VMAIL = [f"vmail:x:{VMAIL_UID}:{VMAIL_UID}::/var/vmail:/usr/sbin/nologin", f"vmail:x:{VMAIL_UID}:"]  # as made


class VmailAccount(FactBase):
    """The vmail user's and group's entries. When they are as made, pyinfra's user and group operations are
    left out: their facts read every user and group on the host, a tenth of a no-op run."""

    def command(self) -> str:
        return "getent passwd vmail; getent group vmail; true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output]


def packages(spec: Spec) -> list[str]:
    extra = (["dovecot-pop3d"] if spec.features.pop3 else []) + \
            (["dovecot-managesieved"] if spec.features.managesieve else [])
    return ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve", *extra]


@deploy("dovecot")
def apply(spec: Spec) -> None:
    if host.get_fact(VmailAccount) != VMAIL:
        server.group(name="vmail group", group="vmail", system=True, gid=VMAIL_UID)
        server.user(name="vmail user owns the mail store", user="vmail", group="vmail", uid=VMAIL_UID, system=True,
                    home="/var/vmail", shell="/usr/sbin/nologin", create_home=False)
    files.directory(name="Mail store", path="/var/vmail", user="vmail", group="vmail", mode="750")
    # Dovecot's sockets for Postfix live in Postfix's queue; Postfix 3.10 (Debian 13) makes it only at its
    # first start, which comes later. Owner and mode as Postfix's own postfix-files sets them.
    files.directory(name="Postfix's private queue directory", path="/var/spool/postfix/private", user="postfix",
                    group="root", mode="700")
    v24 = debian_release() >= 13
    users = config_file(__file__, "/etc/dovecot/users", users=maps.dovecot_users(spec), v24=v24,
                        mode="640", group="dovecot")
    sieve = config_file(__file__, "/etc/dovecot/sieve/spam-to-junk.sieve")
    server.shell(name="Spam sieve script is compiled", commands=["sievec /etc/dovecot/sieve/spam-to-junk.sieve"],
                 _if=sieve.did_change)
    conf = config_file(__file__, "/etc/dovecot/dovecot.conf", check="doveconf -n -c {path} >/dev/null",
                       spec=spec, tls=live_dir(spec), vmail_uid=VMAIL_UID, v24=v24)
    if spec.features.spam_learning:
        # Compiled once the config that allows their pipe is in place (the mail user cannot write here).
        learn = [config_file(__file__, f"/etc/dovecot/sieve/learn-{kind}.sieve") for kind in ("spam", "ham")]
        pipe = config_file(__file__, "/usr/lib/dovecot/sieve-pipe/rspamd-learn", mode="755")
        server.shell(name="Spam learning sieve scripts are compiled", _if=any_changed(conf, *learn, pipe),
                     commands=[f"sievec /etc/dovecot/sieve/learn-{kind}.sieve" for kind in ("spam", "ham")])
    guard = config_file(__file__, "/etc/systemd/system/dovecot.service.d/mailhost.conf")
    systemd.daemon_reload(name="systemd reads Dovecot's upgrade guard", _if=guard.did_change)
    unit(name="Dovecot reloads its config", service="dovecot.service", reloaded=True,
         _if=any_changed(conf, users))  # only if running; a stopped Dovecot starts below
    unit(name="Dovecot is running", service="dovecot.service", running=True, enabled=True)
