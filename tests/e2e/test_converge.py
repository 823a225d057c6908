"""Converging from a spec: dry runs touch nothing, bad specs stop before connecting, interrupted runs
recover, and a real VM (own kernel) converges, stays converged and survives a reboot."""

from __future__ import annotations

import subprocess
import time

import dns.name
import pytest
import yaml

from lab.deploys import REPO, inventory_file, run_deploy
from lab.mailenv import make_mail_env

pytestmark = pytest.mark.e2e

SERVICES = ["postfix", "dovecot", "rspamd", "redis-server", "fail2ban", "nftables"]
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def host_fingerprint(host) -> str:
    """What a deploy would change on a fresh host."""
    return host.ssh("hostname; cat /etc/hosts /etc/mailname 2>/dev/null; ls /var/lib/mailhost 2>&1; "
                    "dpkg -l postfix dovecot-core 2>&1 | tail -2; ls -la /etc/nftables.conf 2>&1", check=False).stdout


def test_dry_run_on_a_fresh_host_shows_the_plan_and_changes_nothing(lab, fresh_host, tmp_path):
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    before = host_fingerprint(host)
    result = run_deploy([host], {"spec": str(env.spec_path)}, dry=True)
    assert result.returncode == 0, result.output[-3000:]
    assert "Detected changes" in result.output
    for op in ("base | Hostname is the mail host name", "base | Mail stack packages",
               "certbot | Certificates for", "postfix | Install /etc/postfix/main.cf"):
        assert op in result.output, f"the plan does not show {op!r}"
    # The DNS plan is shown too: what is known, and the DKIM key the host has not made yet.
    domain = env.domains[0]
    assert f"+ create {domain} MX 10 {env.hostname}." in result.output
    assert f"+ create {env.hostname} A {host.address}" in result.output
    assert f"? pending mail._domainkey.{domain} TXT: known after apply" in result.output
    assert host_fingerprint(host) == before
    assert not lab.dns.query_auth(domain + ".", "MX").answer, "a dry run wrote to the zone"


def test_a_dns_conflict_stops_the_deploy_before_the_host_is_touched(lab, fresh_host, tmp_path):
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    domain = env.domains[0]
    lab.dns.update(domain, lambda u: u.replace(dns.name.from_text(domain + "."), 300, "MX", "10 old-mx.example."))
    result = run_deploy([host], {"spec": str(env.spec_path)})
    assert result.returncode != 0
    assert f"conflict {domain} MX: 10 old-mx.example. was not made by mailhost" in result.output
    assert f"add '{domain} MX' to dns.adopt" in result.output
    assert "mailhost" not in host.ssh("ls /var/lib").stdout, "the host was changed"
    assert not lab.dns.query_auth(f"{env.hostname}.", "A").answer, "DNS was written"


UBUNTU_OS_RELEASE = 'ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.3 LTS"\nID_LIKE=debian\n'


def test_a_host_that_is_not_debian_12_or_13_is_refused_before_any_change(lab, fresh_host, tmp_path):
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    host.put(UBUNTU_OS_RELEASE, "/etc/os-release")  # the release is read from the host, as a VPS tells it
    before = host_fingerprint(host)
    result = run_deploy([host], {"spec": str(env.spec_path)})
    assert result.returncode != 0
    assert ("the host runs Ubuntu 24.04.3 LTS; mailhost supports Debian 13 (trixie) or Debian 12 (bookworm). "
            "Nothing was changed.") in result.output
    assert host_fingerprint(host) == before
    assert not lab.dns.query_auth(f"{env.hostname}.", "A").answer, "DNS was written"


def test_a_bad_spec_stops_the_run_before_any_connection(lab, fresh_host, tmp_path):
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    spec = yaml.safe_load(env.spec_path.read_text())
    spec["domains"].append({"name": "exa mple.test"})
    env.spec_path.write_text(yaml.safe_dump(spec))
    result = run_deploy([host], {"spec": str(env.spec_path)})
    assert result.returncode != 0
    assert "domains[1].name: 'exa mple.test' is not a valid domain name" in result.output
    assert "Connected" not in result.output
    assert "mailhost" not in host.ssh("ls /var/lib").stdout


def test_an_interrupted_run_converges_on_the_next(lab, fresh_host, tmp_path):
    """The controller dies mid-deploy (SSH dropped while apt installs the packages that go ahead of the stack,
    before certbot is asked for anything); the next run finishes the job. On the way, a run whose ACME server
    cannot be reached stops where the certificate is needed, with certbot's own words and a hint, and leaves
    nothing the good run after it cannot converge from."""
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    inventory = inventory_file([host], {"spec": str(env.spec_path)}, tmp_path)
    run = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), str(inventory), "deploy.py", "-y"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    deadline = time.monotonic() + 300
    while "Packages ahead of the stack" not in seen and time.monotonic() < deadline:
        seen += run.stdout.readline()
    time.sleep(3)  # apt is now unpacking on the host
    run.kill()
    run.wait()
    assert "Packages ahead of the stack" in seen
    # Killed mid-install: package scripts were told not to start services, and still are.
    assert "mailhost" in host.ssh(f"cat {POLICY_RC_D}", check=False).stdout
    no_ca = env.spec_path.with_name("no-acme.yaml")
    data = yaml.safe_load(env.spec_path.read_text())
    data["tls"]["acme_directory"] = f"https://{lab.cfg.gateway}:1/dir"  # nothing listens there
    no_ca.write_text(yaml.safe_dump(data))
    failed = run_deploy([host], {"spec": str(no_ca)})
    assert failed.returncode != 0, failed.output[-2000:]
    # The hint names the certificate the services need, which was waited for, and not the standby one.
    assert f"ACME: no certificate {env.hostname} for {env.hostname}" in failed.output, failed.output[-2000:]
    assert f"no certificate {env.hostname}-b" not in failed.output, failed.output[-2000:]
    assert "Connection refused" in failed.output or "Failed to establish" in failed.output, failed.output[-2000:]
    first = run_deploy([host], {"spec": str(env.spec_path)}).check()
    assert first.changed
    assert run_deploy([host], {"spec": str(env.spec_path)}).check().changed == []
    for service in SERVICES:
        assert host.ssh(f"systemctl is-active {service}").stdout.strip() == "active", service
    assert host.ssh(f"test -e {POLICY_RC_D}", check=False).returncode == 1, "policy-rc.d was left behind"


def test_deploys_killed_at_random_points_converge_with_nothing_lost(lab):
    """A few of `benchmarks/interrupt.py`'s trials, at kill points drawn anew each run (the seed is printed):
    a fresh host's first deploy and a live host's change, each killed, each followed by a deploy that must
    converge and verify green with mail, DKIM keys and certificate kept."""
    run = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "benchmarks/interrupt.py"), "--trials", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0 and "2 of 2 trials converged" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]


def test_someone_elses_policy_rc_d_is_left_alone(lab, fresh_host, tmp_path):
    """A host whose image forbids service starts in package scripts (as container images often do)
    still converges, every service started by its role, and the file stays as it was."""
    host = fresh_host()
    env = make_mail_env(lab, host, tmp_path, domains=1)
    theirs = "#!/bin/sh\n# the image: no service starts from package scripts\nexit 101\n"
    host.ssh(f"printf '{theirs}' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}")
    run_deploy([host], {"spec": str(env.spec_path), "verify": False}).check()
    assert host.ssh(f"cat {POLICY_RC_D}").stdout == theirs
    for service in SERVICES:
        assert host.ssh(f"systemctl is-active {service}").stdout.strip() == "active", service


@pytest.mark.vm
def test_vm_converges_stays_converged_and_comes_back_after_reboot(lab, fresh_host, tmp_path):
    # Under emulation every package and handshake is slow: the VM converges the mail stack without the web and
    # MTA-STS parts (nginx, the MTA-STS resolver), which containers of both releases cover, and its no-op
    # re-run skips verify (the first run and the run after the reboot verify).
    host = fresh_host("vm")
    env = make_mail_env(lab, host, tmp_path, domains=1,
                        extra={"features": {"mta_sts": "off", "autoconfig": False, "mta_sts_outbound": False}})
    run_deploy([host], {"spec": str(env.spec_path)}, timeout=3600).check()
    again = run_deploy([host], {"spec": str(env.spec_path), "verify": False}, timeout=1800).check()
    assert not again.changed, f"re-run changed {again.changed}"
    # A VM keeps its own clock: time sync was started by the deploy, not only at the next boot.
    assert host.ssh("systemctl is-active systemd-timesyncd", check=False).stdout.strip() == "active"
    table = host.ssh("nft -s list table inet mailhost").stdout
    host.reboot(timeout=900)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = {s: host.ssh(f"systemctl is-active {s}", check=False).stdout.strip() for s in SERVICES}
        if all(v == "active" for v in states.values()):
            break
        time.sleep(2)
    assert all(v == "active" for v in states.values()), states
    assert host.ssh("nft -s list table inet mailhost").stdout == table
    # rspamd started by the boot pages its Hyperscan databases out of its main process too (rspamd-trim).
    trimmed = host.ssh("journalctl -b -u rspamd -o cat | grep -m1 -o 'paged out [0-9]* MB' || true").stdout.split()
    assert trimmed and int(trimmed[2]) > 20, f"rspamd-trim after the boot: {trimmed}"
    assert host.ssh("hostname -f").stdout.strip() == env.hostname
    assert not run_deploy([host], {"spec": str(env.spec_path)}, timeout=1800).check().changed
