"""A Debian 12 mail host upgraded in place to Debian 13 the way Debian's release notes describe (sources to
trixie, `apt upgrade --without-new-pkgs`, `apt full-upgrade`, reboot), then converged again by mailhost:
nothing is lost, nothing is made anew, and the run after that changes nothing."""

from __future__ import annotations

import uuid

import pytest

from mailclient import imap_fetch, send_inbound
from lab.deploys import run_deploy
from lab.mailenv import make_mail_env

pytestmark = pytest.mark.e2e

# Debian's release notes, non-interactively: every configuration-file question answered with its default
# (keep the version installed, which is mailhost's).
UPGRADE = """set -e
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }
sed -i 's/bookworm/trixie/g' /etc/apt/sources.list
apt_get update
apt_get upgrade --without-new-pkgs
apt_get full-upgrade
"""

# What must be the very same files after the upgrade: DKIM keys and the certificate with its key.
KEPT_FILES = "sha256sum /etc/mailhost/dkim/*/*.rsa /etc/mailhost/dkim/*/*.ed25519 " \
             "/etc/letsencrypt/live/*/fullchain.pem /etc/letsencrypt/live/*/privkey.pem"


def test_a_debian_12_host_upgraded_to_13_keeps_its_mail_and_converges(lab, fresh_host, tmp_path):
    host = fresh_host(release="bookworm")
    env = make_mail_env(lab, host, tmp_path, domains=2, mailboxes_per_domain=2)
    run_deploy([host], {"spec": str(env.spec_path)}).check()
    subjects = {address: f"before the upgrade {uuid.uuid4().hex}" for address in env.mailboxes}
    for address, subject in subjects.items():
        send_inbound(lab, env.hostname, address, subject)
    for address, subject in subjects.items():
        imap_fetch(lab, env, address, subject)  # delivered and stored before the upgrade begins
    kept = host.ssh(KEPT_FILES).stdout
    # 2 domains' RSA and Ed25519 DKIM keys; the host name's two certificates (in use and standby) and the web
    # names' one, each with its key
    assert kept.count("\n") == 2 * 2 + 3 * 2, kept

    upgrade = host.ssh(UPGRADE, timeout=1800, check=False)
    assert upgrade.returncode == 0, f"Debian's upgrade failed on a mailhost host: {upgrade.stdout[-3000:]}"
    host.reboot()
    assert host.ssh("cat /etc/debian_version").stdout.startswith("13."), "the host is not Debian 13"
    assert "2.4." in host.ssh("dpkg-query -W -f '${Version}' dovecot-core").stdout

    # deploy.py ends with verify: `check()` fails on any verify error (services, TLS, DKIM, mail probe, ...)
    converged = run_deploy([host], {"spec": str(env.spec_path)}).check()
    assert converged.changed, "Dovecot 2.4 needs its own configuration: the first run after the upgrade writes it"
    for address, subject in subjects.items():  # the same passwords still log in, and the mail is still there
        assert subject.encode() in imap_fetch(lab, env, address, subject)
    assert host.ssh(KEPT_FILES).stdout == kept, "DKIM keys or the certificate were made anew"
    after = f"after the upgrade {uuid.uuid4().hex}"
    send_inbound(lab, env.hostname, env.mailboxes[0], after)
    assert after.encode() in imap_fetch(lab, env, env.mailboxes[0], after)
    again = run_deploy([host], {"spec": str(env.spec_path)}).check()
    assert again.operations and not again.changed, f"the run after the upgrade changed: {again.changed}"
