"""The lab itself: test hosts of both kinds, DNS with DNSSEC, ACME, the remote receiver, teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import dns.flags
import dns.name
import dns.rdataclass
import dns.rrset
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

from mailhost.dnssec import Anchor, ChainError, tcp_query, validate, validate_chain
from lab import Lab, net
from lab.deploys import REPO, run_deploy

pytestmark = pytest.mark.e2e
TRIVIAL_DEPLOY = "tests/e2e/deploys/identity.py"


def _converge_twice(host, lab: Lab) -> None:
    fqdn = f"mx-{host.name}.lab.test"
    first = run_deploy([host], {"mail_hostname": fqdn}, deploy=TRIVIAL_DEPLOY).check()
    assert first.changed, "a fresh host must need changes"
    assert host.ssh("hostname").stdout.strip() == fqdn
    assert host.ssh("cat /etc/mailname").stdout.strip() == fqdn
    second = run_deploy([host], {"mail_hostname": fqdn}, deploy=TRIVIAL_DEPLOY).check()
    assert second.operations and not second.changed, f"second run changed {second.changed}"


def test_container_accepts_ssh_and_converges_idempotently(fresh_host, lab):
    host = fresh_host("container")
    assert host.ssh("cat /proc/1/comm").stdout.strip() == "systemd"
    assert host.ssh("systemctl is-system-running").stdout.strip() == "running"
    _converge_twice(host, lab)


@pytest.mark.vm
def test_vm_accepts_ssh_and_converges_idempotently(fresh_host, lab):
    host = fresh_host("vm")
    # Its own kernel: not the runner's.
    assert host.ssh("uname -r").stdout.strip() != os.uname().release
    assert host.ssh("cat /proc/1/comm").stdout.strip() == "systemd"
    _converge_twice(host, lab)
    host.reboot()
    assert host.ssh("hostname").stdout.strip() == f"mx-{host.name}.lab.test"


def test_two_containers_at_once_are_separate_hosts(fresh_host, lab):
    a, b = fresh_host("container"), fresh_host("container")
    assert a.address != b.address
    ids = {h.ssh("cat /etc/machine-id; cat /proc/sys/kernel/random/boot_id").stdout for h in (a, b)}
    assert len(ids) == 2
    # Each reaches the other on the lab network (a VPS reaching another VPS).
    assert b.ssh(f"python3 -c 'import socket; socket.create_connection((\"{a.address}\", 22), 3)'").returncode == 0
    # Names resolve through the lab resolver, with a matching PTR as a provider would set.
    assert a.ssh(f"getent ahostsv4 {b.name}.lab.test").stdout.split()[0] == b.address
    # Nothing outside the lab resolves or is reachable.
    assert a.ssh("getent hosts deb.debian.org", check=False).returncode != 0
    assert a.ssh("python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 3)'",
                 check=False).returncode != 0
    # A host that goes leaves the others' way to the gateway as it was: the bridge has a MAC of its own (its
    # lowest port's would change with that port, and every ARP entry for the gateway would point nowhere).
    bridge_mac = Path(f"/sys/class/net/{lab.cfg.bridge}/address")
    assert bridge_mac.read_text().strip() == net.mac_for(lab.cfg.gateway)
    gone = lab.new_host(f"c{os.getpid() % 1000}gone")
    lab.remove_host(gone.name)
    assert bridge_mac.read_text().strip() == net.mac_for(lab.cfg.gateway)
    assert b.ssh(f"python3 -c 'import socket; socket.create_connection((\"{lab.cfg.gateway}\", 14000), 3)'"
                 ).returncode == 0  # Pebble, at once


def test_container_reboot_comes_back(fresh_host):
    host = fresh_host("container")
    host.ssh("echo kept > /root/marker")
    host.reboot(timeout=60)
    assert host.ssh("cat /root/marker").stdout.strip() == "kept"


def test_rfc2136_update_is_served_signed_and_validates_from_parent_anchor(lab):
    zone = f"z{uuid.uuid4().hex[:8]}.test."
    lab.dns.add_zone(zone)
    try:
        name = dns.name.from_text(f"probe.{zone}")
        lab.dns.update(zone, lambda u: u.replace(name, 60, "TXT", '"hello from RFC 2136"'))
        lab.dns.wait_served(name.to_text(), "TXT")
        anchor = Anchor(dns.name.from_text("test."), lab.dns.trust_anchor)
        query = tcp_query(lab.cfg.nameserver)
        rrset = validate_chain(name, "TXT", anchor, query)
        assert [r.strings for r in rrset] == [(b"hello from RFC 2136",)]

        # The validating resolver that test hosts use sets AD on it.
        answer = lab.dns.resolve(name.to_text(), "TXT")
        assert answer.response.flags & dns.flags.AD

        # Tampered data fails validation.
        msg = query(name, dns.rdatatype.TXT)
        txt = msg.get_rrset(msg.answer, name, dns.rdataclass.IN, dns.rdatatype.TXT)
        sigs = msg.get_rrset(msg.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TXT)
        keys = query(dns.name.from_text(zone), dns.rdatatype.DNSKEY)
        keyset = keys.get_rrset(keys.answer, dns.name.from_text(zone), dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        forged = dns.rrset.from_text(name, 60, "IN", "TXT", '"hello from an attacker"')
        validate(txt, sigs, dns.name.from_text(zone), keyset)  # the genuine one passes
        with pytest.raises(ChainError, match="does not validate"):
            validate(forged, sigs, dns.name.from_text(zone), keyset)

        # A wrong trust anchor breaks the chain at its first link.
        wrong = Anchor(dns.name.from_text("test."), lab.dns.dnskeys(zone))
        with pytest.raises(ChainError, match="trust anchor"):
            validate_chain(name, "TXT", wrong, query)
    finally:
        lab.dns.remove_zone(zone)


def test_certbot_gets_a_certificate_from_pebble_through_http01(fresh_host, lab):
    host = fresh_host("container")
    fqdn = f"{host.name}.lab.test"
    host.put(lab.ca_bundle.read_text(), "/root/lab-ca.pem")
    host.ssh("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q certbot")
    host.ssh(f"REQUESTS_CA_BUNDLE=/root/lab-ca.pem certbot certonly --standalone --non-interactive "
             f"--agree-tos -m admin@{fqdn} --server {lab.acme.directory_url} -d {fqdn}")
    chain_pem = host.ssh(f"cat /etc/letsencrypt/live/{fqdn}/fullchain.pem").stdout.encode()
    leaf, *intermediates = x509.load_pem_x509_certificates(chain_pem)
    roots = x509.load_pem_x509_certificates(lab.acme.root_file.read_bytes())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(DNSName(fqdn))
    verifier.verify(leaf, intermediates)  # raises if the chain or the name is wrong
    log = host.ssh("cat /var/log/letsencrypt/letsencrypt.log").stdout
    assert f"http-01 challenge for {fqdn}" in log
    # Validation is real: a name that points at no host of ours is refused.
    lab.dns.update("lab.test.", lambda u: u.replace("nowhere", 60, "A", lab.cfg.addr(lab.cfg.host_last)))
    refused = host.ssh(f"REQUESTS_CA_BUNDLE=/root/lab-ca.pem certbot certonly --standalone --non-interactive "
                       f"--agree-tos --server {lab.acme.directory_url} -d nowhere.lab.test", check=False)
    assert refused.returncode != 0
    assert "nowhere.lab.test" in refused.stdout + refused.stderr


def test_message_from_a_host_reaches_the_remote_receiver_with_metadata(fresh_host, lab):
    host = fresh_host("container")
    host.put(lab.lab_ca.read_text(), "/root/lab-ca.pem")
    token = uuid.uuid4().hex
    host.ssh("python3 -", input=textwrap.dedent(f"""
        import smtplib, ssl
        ctx = ssl.create_default_context(cafile="/root/lab-ca.pem")
        with smtplib.SMTP("{lab.receiver.hostname}", 25, local_hostname="{host.name}.lab.test", timeout=20) as s:
            s.starttls(context=ctx)
            s.sendmail("alice@{host.name}.lab.test", ["bob@remote.test"],
                       "Subject: {token}\\r\\nFrom: alice@{host.name}.lab.test\\r\\n\\r\\nhello\\r\\n")
    """))
    got = lab.spool.wait_for(lambda d: d.message["Subject"] == token, timeout=30)
    assert got.peer == host.address
    assert got.helo == f"{host.name}.lab.test"
    assert got.mail_from == f"alice@{host.name}.lab.test"
    assert got.rcpt_tos == ["bob@remote.test"]
    assert got.tls and got.tls_version in ("TLSv1.2", "TLSv1.3")


def test_removed_host_leaves_nothing_even_after_its_owner_was_killed(lab):
    """A process that made a host dies (SIGKILL); the host is still torn down completely."""
    name = f"orphan{os.getpid() % 1000}"
    script = ("from lab import Lab; import os, time; Lab().new_host(%r); print('up', flush=True); "
              "time.sleep(600)" % name)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert owner.stdout.readline().strip() == "up"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    host = lab.host(name)
    assert host.ssh("true").returncode == 0  # it outlived its owner, as a VPS would
    lab.remove_host(name)
    assert not net.netns_exists(f"mhl-{name}")
    assert not net.link_exists(f"mhl-h{host.record.index}")
    assert name not in json.dumps(lab.status())
    assert not any(f"/hosts/{name}/" in line for line in open("/proc/mounts"))
    assert subprocess.run(["pgrep", "-f", "--", f"-M {name} "], capture_output=True).returncode == 1
