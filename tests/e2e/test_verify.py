"""`mailhost verify` on a lab host converged by deploy.py: all green, stable, and each check goes red for
the fault it exists for (and only the checks related to that fault do)."""

from __future__ import annotations

import base64
import imaplib
import ipaddress
import json
import smtplib
import time
import urllib.request
import uuid
from xml.etree import ElementTree

import dns.name
import dns.rdatatype
import pytest
import yaml

from mailclient import tls_context
from lab.deploys import run_deploy
from lab.mailenv import make_mail_env
from mailhost import hostinfo, rollover
from mailhost.dns.records import tlsa_value
from mailhost.spec import load_spec
from mailhost.verify.checks.dane import spki
from mailhost.verify.sessions import Mode, open_session, unverified_context
from mailhost.verify import Target, lookup_with, verify
from mailhost.verify.checks import dns as dns_checks
from mailhost.verify.cli import ssh_runner

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    """A container converged by deploy.py (which ends with the verify report), and how to verify it; with
    POP3 and ManageSieve on, so verify checks TLS on every port there is, and a TTL above the lab BIND's
    max-zone-ttl (3600), so the deploy meets a server that stores TTLs its own way (and must converge)."""
    host = lab.new_host(f"vf{uuid.uuid4().hex[:5]}")
    env = make_mail_env(lab, host, tmp_path_factory.mktemp("spec"), domains=1,
                        extra={"features": {"pop3": True, "managesieve": True}, "dns": {"ttl": 7200}})
    env.first_run = run_deploy([host], {"spec": str(env.spec_path)}).check()
    spec = load_spec(env.spec_path)
    run = ssh_runner(f"root@{host.address}", str(host.ssh_key),
                     ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"])
    env.target = lambda: Target(spec, run)
    yield env
    lab.remove_host(host.name)


def failed(report) -> set[str]:
    return {r.check for r in report.results if r.status.failed}


def restore(site) -> None:
    """A deploy puts host and records back and its own verify passes, although that verify runs a few
    seconds after the DNS stage republished, while the lab resolver may still serve the broken value the
    test just read (a cache lag is a warning: `despite_caches`)."""
    run_deploy([site.host], {"spec": str(site.spec_path)}).check()


def test_a_resolver_that_cannot_validate_is_never_switched_to(lab, site):
    """A host whose unbound cannot validate (here: a trust anchor that is not the lab's key) stays on the
    resolver it had: the deploy fails at the switch, and the host still resolves names. A host already
    switched when its anchor changes to a bad one goes back to that resolver, and a good run switches again."""
    site.host.ssh("printf 'nameserver %s\\n' " + lab.cfg.gateway + " > /etc/resolv.conf && "
                  "rm /var/lib/mailhost/staged/etc/resolv.conf")  # as before the first switch
    spec = yaml.safe_load(site.spec_path.read_text())
    beside = site.spec_path.parent  # the spec's relative paths (password files) stay valid
    (beside / "wrong-anchor.txt").write_text("test. IN DS 4242 13 2 " + "5A" * 32 + "\n")
    spec["verify"]["trust_anchor"] = spec["resolver"]["trust_anchor"]  # verify itself still trusts the lab
    spec["resolver"]["trust_anchor"] = "wrong-anchor.txt"
    broken = beside / "wrong-anchor-spec.yaml"
    broken.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        result = run_deploy([site.host], {"spec": str(broken)})
        assert result.returncode != 0, result.output[-3000:]
        assert "unbound does not answer with validated data" in result.output
        assert site.host.ssh("cat /etc/resolv.conf").stdout.strip() == f"nameserver {lab.cfg.gateway}"
        # (a lab name other than the host's own, which /etc/hosts answers)
        assert lab.cfg.nameserver in site.host.ssh(f"getent ahosts ns1.{lab.cfg.parent_zone}").stdout.split()
    finally:
        restore(site)
    assert "127.0.0.1" in site.host.ssh("cat /etc/resolv.conf").stdout
    try:  # switched now: the bad anchor reaches a running unbound the host asks
        result = run_deploy([site.host], {"spec": str(broken)})
        assert result.returncode != 0, result.output[-3000:]
        assert "unbound does not answer with validated data: the host goes back to the resolver it had" \
            in result.output
        for path in ("/etc/resolv.conf", "/var/spool/postfix/etc/resolv.conf"):
            assert site.host.ssh(f"cat {path}").stdout.strip() == f"nameserver {lab.cfg.gateway}", path
        assert lab.cfg.nameserver in site.host.ssh(f"getent ahosts ns1.{lab.cfg.parent_zone}").stdout.split()
    finally:
        restore(site)
    assert "127.0.0.1" in site.host.ssh("cat /etc/resolv.conf").stdout


def test_a_mail_client_finds_the_servers_from_the_address_alone(lab, site):
    """What a mail program does with an address and a password (RFC 6186/8314, Thunderbird's autoconfig): the
    SRV records name the host, the autoconfig file (HTTPS, certificate checked) names its ports, and with what
    it found it logs in over IMAPS and submits over implicit TLS."""
    address = site.mailboxes[0]
    domain = address.split("@")[1]
    found = {label: lab.dns.resolve(f"{label}.{domain}", "SRV")[0] for label in ("_imaps._tcp", "_submissions._tcp")}
    assert {label: (rd.target.to_text(), rd.port) for label, rd in found.items()} == {
        "_imaps._tcp": (f"{site.hostname}.", 993), "_submissions._tcp": (f"{site.hostname}.", 465)}
    url = f"https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={address}"
    with urllib.request.urlopen(url, context=tls_context(lab), timeout=20) as response:
        config = ElementTree.fromstring(response.read())
    assert domain in [d.text for d in config.iter("domain")]
    imap, smtp = config.find(".//incomingServer"), config.find(".//outgoingServer")
    assert imap.get("type") == "imap" and smtp.get("type") == "smtp"
    user = imap.findtext("username").replace("%EMAILADDRESS%", address)
    with imaplib.IMAP4_SSL(imap.findtext("hostname"), int(imap.findtext("port")), ssl_context=tls_context(lab),
                           timeout=20) as client:
        assert client.login(user, site.passwords[address])[0] == "OK"
    assert smtp.findtext("socketType") == "SSL"
    with smtplib.SMTP_SSL(smtp.findtext("hostname"), int(smtp.findtext("port")), context=tls_context(lab),
                          timeout=20) as client:
        assert client.login(smtp.findtext("username").replace("%EMAILADDRESS%", address),
                            site.passwords[address])[0] == 235


def _tls_keys(site) -> dict[str, str]:
    return hostinfo.parse_tls_public_keys(site.host.ssh(hostinfo.TLS_PUBLIC_KEYS).stdout.splitlines())


def _served_tlsa(site) -> str:
    """The TLSA value of the certificate served on port 25, as a DANE sender computes it."""
    with open_session(site.host.address, 25, Mode.SMTP_STARTTLS, site.hostname, unverified_context(),
                      handshake_only=True) as session:
        return tlsa_value(spki(session.certificate()))


def _published_tlsa(lab, site) -> set[str]:
    answer = lab.dns.query_auth(f"_25._tcp.{site.hostname}", "TLSA").answer
    return {rd.to_text() for rrset in answer if rrset.rdtype == dns.rdatatype.TLSA for rd in rrset}


def test_a_key_rollover_switches_to_the_standby_key_published_long_before(lab, site):
    """Raising tls.key_generation: a run too soon after the standby key's TLSA record went out waits and changes
    nothing; once dns.ttl has passed, the services switch to the standby key (a DANE sender finds it in the TLSA
    set it may have cached), the slot left gets a new key, and the TLSA set names the two keys now in place."""
    first, second = rollover.slots(load_spec(site.spec_path))
    current = lambda: site.host.ssh(f"readlink {rollover.CURRENT}").stdout.strip().rsplit("/", 1)[-1]  # noqa: E731
    start, keys = current(), _tls_keys(site)
    standby = second if start == first else first
    as_tlsa = lambda key: tlsa_value(base64.b64decode(key))  # noqa: E731
    assert _served_tlsa(site) == as_tlsa(keys[start])
    assert _published_tlsa(lab, site) == {as_tlsa(keys[first]), as_tlsa(keys[second])}  # both, all along
    spec = yaml.safe_load(site.spec_path.read_text())
    spec["tls"]["key_generation"] = int(site.host.ssh(f"cat {rollover.GENERATION_FILE}").stdout) + 1
    rotate = site.spec_path.parent / "rollover-spec.yaml"
    rotate.write_text(yaml.safe_dump(spec, sort_keys=False))
    # The standby key's record went out when the site was deployed, less than dns.ttl ago.
    early = run_deploy([site.host], {"spec": str(rotate)}).check()
    assert "key rollover waits until" in early.output and not early.changed, early.changed
    assert current() == start and _tls_keys(site) == keys
    # As if dns.ttl had passed since: the host's note of when the standby key was published, moved back.
    site.host.ssh(f"awk '{{print $1, $2 - {spec['dns']['ttl'] + 60}}}' {rollover.PUBLISHED_FILE} > /tmp/p && "
                  f"mv /tmp/p {rollover.PUBLISHED_FILE}")
    done = run_deploy([site.host], {"spec": str(rotate)}).check()
    assert "the services switch to" in done.output
    after = _tls_keys(site)
    assert current() == standby and after[standby] == keys[standby]
    assert after[start] != keys[start]  # the slot left has a new key
    assert _served_tlsa(site) == as_tlsa(keys[standby])
    assert _published_tlsa(lab, site) == {as_tlsa(after[first]), as_tlsa(after[second])}  # the old key withdrawn
    settle()
    report = verify(Target(load_spec(rotate), site.target().run))
    assert failed(report) == set(), report.text(color=False)
    again = run_deploy([site.host], {"spec": str(rotate)}).check()
    assert not again.changed, again.changed


def test_deploy_ends_with_an_all_green_report_and_verify_is_stable(site):
    assert "--> Verify " in site.first_run.output and " 0 errors" in site.first_run.output
    first, second = verify(site.target()), verify(site.target())
    assert failed(first) == set() and first.exit_code() == 0, first.text(color=False)
    checks = {r.check for r in first.results}
    assert {"dns.mx", "dns.address", "dns.spf", "dns.dkim", "dns.dmarc", "dnssec.chain", "dnssec.ds",
            "reverse.ptr", "tls.certificate", "tls.versions", "smtp.relay", "smtp.auth-before-tls",
            "smtp.submission-auth", "mail.dkim", "mail.spf", "mail.dmarc", "mail.arc", "reputation.dnsbl", "host.services",
            "host.firewall", "host.fail2ban", "host.keys", "host.renewal", "host.resolver", "dane.tlsa",
            "dns.tlsa", "dns.caa", "dns.tlsrpt", "smtp.vrfy", "smtp.role-addresses", "mta-sts.record",
            "mta-sts.policy", "mta-sts.id", "autoconfig.srv", "autoconfig.file"} <= checks
    tls_ports = {r.subject.split(" ")[0].rsplit(":", 1)[1] for r in first.results if r.check == "tls.certificate"}
    assert tls_ports == {"25", "443", "465", "587", "143", "993", "995", "4190"}
    # Every address of the host (IPv4 and IPv6) is checked, as a sender may pick either.
    for address in (site.host.address, site.host.address6):
        assert {r.subject for r in first.results if r.check in ("tls.certificate", "dane.tlsa")
                and f"({address})" in r.subject}, f"{address} not checked"
    assert first.to_json() == second.to_json()  # read-only and deterministic
    assert first.text(color=False) == second.text(color=False)


def settle() -> None:
    """The lab resolver caches answers (positive and negative) for at most 5 s: let a DNS change show."""
    time.sleep(6)


def zone_change(lab, site, build) -> None:
    lab.dns.update(site.domains[0], build)
    time.sleep(1)  # BIND's inline signing publishes the signed change a moment later
    settle()


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text if text.endswith(".") else text + ".")


DNS_FAULTS = {
    "wrong DKIM key": (lambda d: lambda u: u.replace(name(f"mail._domainkey.{d}"), 3600, "TXT",
                                                     '"v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34"'),
                       {"dns.dkim", "mail.dkim", "mail.arc"}, {"mail.dmarc"}),  # (the ARC seal is by that key)
    "SPF without the host": (lambda d: lambda u: (u.delete(name(d), "TXT"), u.add(name(d), 3600, "TXT",
                                                                                 '"v=spf1 -all"')),
                             {"dns.spf", "mail.spf"}, {"dns.spf", "dns.spf-record", "mail.spf"}),
    "missing DMARC": (lambda d: lambda u: u.delete(name(f"_dmarc.{d}"), "TXT"),
                      {"dns.dmarc", "mail.dmarc"}, {"dns.dmarc", "dns.dmarc-record", "mail.dmarc"}),
    # DANE senders would hold our mail: the record no longer matches the certificate served on 25.
    "wrong TLSA": (lambda d: lambda u: u.replace(name(f"_25._tcp.mail.{d}"), 3600, "TLSA", "3 1 1 " + "ab" * 32),
                   {"dns.tlsa", "dane.tlsa"}, set()),
    "CAA for another CA": (lambda d: lambda u: u.replace(name(f"mail.{d}"), 3600, "CAA", '0 issue "other-ca.example"'),
                           {"dns.caa"}, set()),
    "missing TLS-RPT": (lambda d: lambda u: u.delete(name(f"_smtp._tls.{d}"), "TXT"),
                        {"dns.tlsrpt", "dns.tlsrpt-record"}, set()),
    # Senders would keep the policy they cached: the id no longer says which policy is served.
    "stale MTA-STS id": (lambda d: lambda u: u.replace(name(f"_mta-sts.{d}"), 3600, "TXT", '"v=STSv1; id=0"'),
                         {"mta-sts.id", "dns.mta-sts-record"}, set()),
    "SRV elsewhere": (lambda d: lambda u: u.replace(name(f"_imaps._tcp.{d}"), 3600, "SRV",
                                                    "0 1 993 imap.elsewhere.example."),
                      {"autoconfig.srv", "dns.srv"}, set()),
}


@pytest.mark.parametrize("fault", DNS_FAULTS, ids=list(DNS_FAULTS))
def test_a_broken_record_fails_its_checks_only(lab, site, fault):
    change, must, may = DNS_FAULTS[fault]
    zone_change(lab, site, change(site.domains[0]))
    try:
        report = verify(site.target())
        assert must <= failed(report) <= must | may, report.text(color=False)
    finally:
        restore(site)
        settle()
    assert failed(verify(site.target())) == set()


def test_published_records_are_read_from_the_zones_own_servers(lab, site):
    """What verify weighs a resolver's answer against: the zone's servers, past the resolver's cache."""
    spec, domain = load_spec(site.spec_path), site.domains[0]
    res = dns_checks.resolver(site.target().resolvers)
    through_resolver = lookup_with(res)
    published = dns_checks.authoritative_lookup(spec, res, through_resolver)
    assert through_resolver(domain, "TXT") == published(domain, "TXT") == ["v=spf1 mx -all"]
    lab.dns.update(domain, DNS_FAULTS["SPF without the host"][0](domain))
    time.sleep(1)  # BIND's inline signing publishes the signed change a moment later
    try:
        assert published(domain, "TXT") == ["v=spf1 -all"]  # at once, whatever the resolver has cached
        assert published("remote.test", "MX") == through_resolver("remote.test", "MX") != []  # not ours
    finally:
        restore(site)
        settle()


def test_a_missing_ds_fails_the_dnssec_checks(lab, site):
    zone = site.domains[0]
    lab.dns.update("test.", lambda u: u.delete(name(zone), "DS"))
    settle()
    try:
        report = verify(site.target())
        # An unsigned delegation voids DANE too: senders ignore TLSA records they cannot validate.
        assert {"dnssec.ds", "dnssec.chain", "dane.tlsa"} == failed(report), report.text(color=False)
        ds = [r for r in report.results if r.check == "dnssec.ds"][0]
        assert f"{zone}. IN DS " in ds.fix  # the exact DS to publish
    finally:
        lab.dns.publish_ds(zone)
        settle()
    assert failed(verify(site.target())) == set()


def test_a_wrong_ptr_fails_reverse_dns_and_the_deploy(lab, site):
    lab.dns.set_ptr(site.host.address, f"someone-else.{site.domains[0]}")
    settle()
    try:
        report = verify(site.target())
        assert failed(report) == {"reverse.ptr"}, report.text(color=False)
        # The deploy cannot repair a PTR (the address's owner sets it): its verify stage fails the run.
        deploy = run_deploy([site.host], {"spec": str(site.spec_path)})
        assert deploy.returncode != 0 and not deploy.changed
        assert "ERROR   reverse.ptr" in deploy.output and f"Verify of {site.hostname} failed" in deploy.output
    finally:
        lab.dns.set_ptr(site.host.address, site.hostname)
        settle()


def test_a_dnsbl_listing_fails_reputation(lab, site):
    listed = name(ipaddress.ip_address(site.host.address).reverse_pointer.replace(".in-addr.arpa", "")
                  + ".dnsbl.test")
    lab.dns.update("dnsbl.test", lambda u: u.replace(listed, 60, "A", "127.0.0.2"))
    lab.dns.wait_served(listed.to_text(), "A")
    settle()
    try:
        report = verify(site.target())
        assert failed(report) == {"reputation.dnsbl"}, report.text(color=False)
    finally:
        lab.dns.update("dnsbl.test", lambda u: u.delete(listed))
        settle()


# fault -> (how to break the host, checks that must fail, checks that may fail with it)
HOST_FAULTS = {
    "stopped service": ("systemctl stop fail2ban", {"host.services", "host.fail2ban"}, set()),
    "extra open port": ("nft insert rule inet mailhost input tcp dport 8025 accept; "
                        "(setsid python3 -m http.server 8025 >/dev/null 2>&1 &); sleep 1", {"host.firewall"}, set()),
    # The classic open relay: "trusted" networks that are the whole internet. (Plain `permit` rules are
    # refused by Postfix itself: smtpd then never starts, and verify reports timeouts on 25.)
    "open relay": ("postconf -e 'mynetworks = 0.0.0.0/0 [::]/0' && postfix reload", {"smtp.relay"},
                   {"smtp.submission-auth"}),
    "AUTH before TLS": ("postconf -P 'submission/inet/smtpd_tls_security_level=may' "
                        "'submission/inet/smtpd_tls_auth_only=no' && postfix reload", {"smtp.auth-before-tls"},
                        set()),
    "wrong-name certificate": (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=wrong.example -keyout /root/k.pem "
        "-out /root/c.pem 2>/dev/null && postconf -e 'smtpd_tls_chain_files = /root/k.pem, /root/c.pem' "
        "&& postfix reload", {"tls.certificate", "dane.tlsa"}, {"mail.probe"}),
    "MTA-STS policy gone": ("rm /etc/nginx/mailhost/mta-sts.txt", {"mta-sts.policy"}, set()),
    # Bounces and complaints would have nowhere to go (the site's one domain has no catch-all).
    "postmaster@ and abuse@ unrouted": ("sed -i -e '/^postmaster@/d' -e '/^abuse@/d' /etc/postfix/virtual_aliases && "
                                        "postmap /etc/postfix/virtual_aliases", {"smtp.role-addresses"}, set()),
    "VRFY allowed": ("postconf -e disable_vrfy_command=no && postfix reload", {"smtp.vrfy"}, set()),
    # The host's resolver stops validating (what a bad edit does), or the host stops using it (what a DHCP
    # client or systemd-resolved rewriting resolv.conf does): either way Postfix's DANE has nothing to stand on.
    "resolver not validating": ("sed -i 's/^    harden-glue: yes/    val-permissive-mode: yes/' "
                                "/etc/unbound/unbound.conf && systemctl restart unbound", {"host.resolver"}, set()),
    "resolv.conf rewritten": ("printf 'nameserver 198.18.0.1\\n' > /etc/resolv.conf", {"host.resolver"}, set()),
    # rspamd still signs with a key others can read: only the key check sees it.
    "DKIM key file mode": ("chmod 644 /etc/mailhost/dkim/*/*", {"host.keys"}, set()),
    # Forwarded mail would leave without the seal its receiver needs once SRS has changed the sender (a reload
    # keeps rspamd answering: the probe through submission is still signed).
    # The MTA-STS resolver starts only when Postfix asks, so a resolver that cannot start shows only when asked
    # (and then its socket gives up: Postfix would hold every outbound message).
    "MTA-STS resolver cannot start": ("systemctl stop postfix-mta-sts-resolver && echo 'port: [' > "
                                      "/etc/mta-sts-daemon.yml", {"host.mta-sts-resolver"}, {"host.services"}),
    "ARC sealing off": ("rm /etc/rspamd/local.d/arc.conf && systemctl reload rspamd && sleep 5", {"mail.arc"}, set()),
}


@pytest.mark.parametrize("fault", HOST_FAULTS, ids=list(HOST_FAULTS))
def test_a_broken_host_fails_its_checks_only(site, fault):
    command, must, may = HOST_FAULTS[fault]
    site.host.ssh(command)
    try:
        report = verify(site.target())
        assert must <= failed(report) <= must | may, report.text(color=False)
    finally:
        site.host.ssh("pkill -f 'http.server 8025' || true", check=False)
        restore(site)
    assert failed(verify(site.target())) == set()


def test_dmarc_reports_that_reach_the_rua_address_are_summarised_without_touching_the_mailbox(lab, site, capsys):
    """A receiver's aggregate report about the domain (mail from the host passing, from a forger failing) is
    mailed to postmaster@, the default rua; `mailhost reports` finds it in the mailbox postmaster@ leads to,
    over IMAPS, and says who sent as the domain; the message stays unread."""
    from lab.dmarc_reports import Row, aggregate_report, report_message
    from mailhost.cli import main
    domain, forger = site.domains[0], "203.0.113.66"
    report_id = f"e2e-{uuid.uuid4().hex[:8]}"
    xml = aggregate_report(domain, [Row(site.host.address, 5, "pass", "pass", "none", domain),
                                    Row(forger, 2, "fail", "fail", "reject", domain)], report_id=report_id)
    with smtplib.SMTP(site.hostname, 25, local_hostname="mx.remote.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(lab))
        smtp.send_message(report_message(domain, f"postmaster@{domain}", xml, report_id=report_id))
    deadline = time.monotonic() + 60
    while True:  # delivery is asynchronous
        assert main(["reports", "--json", "--days", "2", str(site.spec_path)]) == 0
        summary = json.loads(capsys.readouterr().out)
        if summary["domains"][domain]["reports"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert summary["mailbox"] == f"user0@{domain}"  # postmaster@ is the lab spec's alias to it
    got = summary["domains"][domain]
    assert (got["reports"], got["messages"], got["dmarc_pass"], got["dispositions"]) == (1, 7, 5, {"reject": 2})
    assert {ip: (s["messages"], s["pass"], s["ours"]) for ip, s in got["sources"].items()} == {
        site.host.address: (5, 5, True), forger: (2, 0, False)}
    assert main(["reports", str(site.spec_path)]) == 0
    assert f"1 sender(s) other than this host use {domain}" in capsys.readouterr().out
    with imaplib.IMAP4_SSL(site.hostname, 993, ssl_context=tls_context(lab), timeout=20) as imap:
        imap.login(f"user0@{domain}", site.passwords[f"user0@{domain}"])
        imap.select("INBOX", readonly=True)
        _, found = imap.search(None, "SUBJECT", f'"{report_id}"')
        _, flags = imap.fetch(found[0].split()[-1], "(FLAGS)")
    assert b"\\Seen" not in flags[0]  # read-only: still unread for its owner
