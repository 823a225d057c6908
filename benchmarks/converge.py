#!/usr/bin/env python3
"""Converge figures on lab container hosts: fresh converge vs a plain `apt-get install` of the same
packages, no-op re-run, idle RSS of the mail stack, and 1 vs 100 domains / 1,000 mailboxes.

    .venv/bin/python benchmarks/converge.py

Prints figures with their targets; asserts nothing. Uses (and, if it started it, stops) the lab. The
deploys run without their verify stage (`verify: false`), which is timed on its own.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailhost.lab import Lab  # noqa: E402
from mailhost.lab.deploys import run_deploy  # noqa: E402
from mailhost.lab.mailenv import make_mail_env  # noqa: E402
from mailhost.passwords import sha512_crypt  # noqa: E402
from mailhost.spec import load_spec  # noqa: E402
from mailhost.verify import Target, verify  # noqa: E402
from mailhost.verify.cli import ssh_runner  # noqa: E402
from roles import all_packages  # noqa: E402

SERVICES = ["postfix@-", "dovecot", "rspamd", "redis-server", "opendkim", "fail2ban"]
# Each unit's own cgroup (postfix@- lives in system-postfix.slice, so ask systemd where).
PIDS = ("for u in " + " ".join(SERVICES) + "; do cat /sys/fs/cgroup$(systemctl show -p ControlGroup --value $u)"
        "/cgroup.procs; done")
# RSS (KiB) counts pages shared between processes (libraries, a forked parent's memory) once per
# process; PSS splits them, so it is what the stack really occupies.
MEMORY = (PIDS + " | while read p; do awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r, p}' "
          "/proc/$p/smaps_rollup 2>/dev/null; done | awk '{r+=$1; p+=$2} END {print r, p}'")
# Postfix ends a per-connection process (smtpd, ...) after max_idle (100 s) without work.
POSTFIX_IDLE = "timeout 150 sh -c 'while pgrep -x smtpd >/dev/null; do sleep 1; done'"


def row(what: str, value: str, target: str = "") -> None:
    print(f"{what:<52} {value:>14}  {target}", flush=True)


def main() -> None:
    lab = Lab()
    started = lab.up()
    made = []
    try:
        with tempfile.TemporaryDirectory(prefix="mailhost-bench-") as tmp:
            tmp = Path(tmp)
            # Warm the apt proxy so neither side of the comparison pays for downloads.
            warm = lab.new_host("bench-warm")
            made.append(warm)
            small = make_mail_env(lab, warm, tmp / "warm", domains=1)
            packages = all_packages(load_spec(small.spec_path))
            install = ("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                       "--no-install-recommends " + " ".join(packages))
            warm.ssh(install, timeout=3600)

            plain = lab.new_host("bench-apt")
            made.append(plain)
            start = time.monotonic()
            plain.ssh(install, timeout=3600)
            apt_seconds = time.monotonic() - start
            row("plain apt-get install of the same packages", f"{apt_seconds:.1f} s")

            one = lab.new_host("bench-one")
            made.append(one)
            env = make_mail_env(lab, one, tmp / "one", domains=1, mailboxes_per_domain=1)
            fresh = run_deploy([one], {"spec": str(env.spec_path), "verify": False}).check()
            row("fresh converge, 1 domain / 1 mailbox", f"{fresh.seconds:.1f} s")
            row("  ratio to plain apt-get install", f"{fresh.seconds / apt_seconds:.2f}", "target <= 1.15")
            noop = run_deploy([one], {"spec": str(env.spec_path), "verify": False}).check()
            row("no-op re-run", f"{noop.seconds:.1f} s", f"target <= 10 s ({len(noop.changed)} changes)")
            start = time.monotonic()
            report = verify(Target(load_spec(env.spec_path), env.spec_path.parent, ssh_runner(
                f"root@{one.address}", str(one.ssh_key), ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"])))
            row("verify after converge (the deploy's last stage)", f"{time.monotonic() - start:.1f} s",
                f"{report.counts()}")
            time.sleep(20)
            rss_kib, pss_kib = map(int, one.ssh(MEMORY).stdout.split())
            row("RSS 20 s after verify's probes (smtpd still up)", f"{rss_kib / 1024:.0f} MB",
                f"PSS {pss_kib / 1024:.0f} MB")
            one.ssh(POSTFIX_IDLE)
            rss_kib, pss_kib = map(int, one.ssh(MEMORY).stdout.split())
            row("idle RSS of the mail stack", f"{rss_kib / 1024:.0f} MB", f"target <= 300 MB; PSS {pss_kib / 1024:.0f}"
                " MB (" + ", ".join(SERVICES) + ")")

            big = lab.new_host("bench-big")
            made.append(big)
            shared = sha512_crypt("benchmark", "bench@example.org")
            env_big = make_mail_env(lab, big, tmp / "big", domains=100, mailboxes_per_domain=10, shared_hash=shared)
            fresh_big = run_deploy([big], {"spec": str(env_big.spec_path), "verify": False}).check()
            row("fresh converge, 100 domains / 1,000 mailboxes", f"{fresh_big.seconds:.1f} s")
            row("  ratio to 1 domain / 1 mailbox", f"{fresh_big.seconds / fresh.seconds:.2f}", "target <= 1.5")
            noop_big = run_deploy([big], {"spec": str(env_big.spec_path), "verify": False}).check()
            row("no-op re-run, 100 domains / 1,000 mailboxes", f"{noop_big.seconds:.1f} s")
    finally:
        for host in made:
            lab.remove_host(host.name)
        if started:
            lab.down()


if __name__ == "__main__":
    main()
