#!/usr/bin/env python3
"""Converge figures on lab container hosts, per Debian release, measured in one run: fresh converge vs a
plain `apt-get install` of the same packages, no-op re-run, idle memory of the mail stack (before any
mail, and once verify's mail has been handled and its processes have ended), and 1 vs 100 domains /
1,000 mailboxes.

    .venv/bin/python benchmarks/converge.py [--release trixie|bookworm ...] [--rounds N]

Prints figures with their targets, then the releases side by side; asserts nothing. Uses (and, if it started it, stops) the lab. The
deploys run without their verify stage (`verify: false`), which is timed on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import Lab  # noqa: E402
from lab.config import RELEASES  # noqa: E402
from lab.deploys import run_deploy  # noqa: E402
from lab.hosts import TestHost  # noqa: E402
from lab.mailenv import make_mail_env  # noqa: E402
from mailhost.passwords import sha512_crypt  # noqa: E402
from mailhost.spec import load_spec  # noqa: E402
from mailhost.verify import Target, verify  # noqa: E402
from mailhost.verify.cli import ssh_runner  # noqa: E402
from roles import all_packages, certbot  # noqa: E402

# Postfix's processes are in postfix@- on Debian 12 and in postfix itself on Debian 13 (the other is empty).
# The MTA-STS resolver and its proxy run only while Postfix asks (a minute after its last question).
SERVICES = ["postfix", "postfix@-", "dovecot", "rspamd", "redis-server", "fail2ban", "unbound", "nginx",
            "postfix-mta-sts-resolver", "mailhost-mta-sts.service", "postsrsd"]
ROUNDS = 3  # fresh converges and plain installs, timed in turns (the target's median needs three)
STACK_MEMORY = Path(__file__).with_name("stack_memory.py")
# Processes that serve a connection or a burst of mail and end after idling (Postfix's max_idle is
# 100 s, and its anvil, proxymap, ... end 100 s after their last client; Dovecot's idle_kill 1 min; the MTA-STS
# resolver a minute after Postfix's last question).
TRANSIENT = ('"^(smtpd|anvil|trivial-rewrite|proxymap|cleanup|lmtp|smtp|postscreen|dnsblog|bounce|tlsproxy) '
             '|^dovecot/(auth|imap-login|imap|lmtp|pop3|managesieve)'
             '|^/usr/bin/python3 /usr/bin/mta-sts-daemon |^/usr/lib/systemd/systemd-socket-proxyd "')
SETTLED = f"timeout 360 sh -c 'while pgrep -f {TRANSIENT} >/dev/null; do sleep 2; done'"
# The targets, the same on every release.
TARGETS = {"ratio": 1.10, "noop": 3.0, "verify": 5.0, "memory": 150, "big_ratio": 1.3, "noop_big": 5.0}  # issue 16


def row(what: str, value: str, target: str = "") -> None:
    print(f"{what:<52} {value:>14}  {target}", flush=True)


def certbot_retries(host: TestHost) -> int:
    """How often the deploy's certbot job asked again after a failed issuance (`roles.certbot.AGAIN`): a turn
    that retried waited for the CA's timeout and the pause, so its figure says so."""
    found = host.ssh(f"grep -c 'asking once more' {certbot.LOG}", check=False).stdout.strip()
    return int(found or 0)


def memory(host: TestHost, when: str, target: str = "") -> float:
    """The stack's resident set (each physical page once), with per-process RSS summed and PSS; returns MB."""
    lines = host.ssh("python3 - " + " ".join(SERVICES), input=STACK_MEMORY.read_text()).stdout.splitlines()
    rss_sum, pss_sum, resident = (int(kib) / 1024 for kib in lines[0].split())
    row(f"idle memory of the stack, {when}", f"{resident:.0f} MB", target or "resident set (each page once)")
    row("  per-process RSS summed / PSS summed", f"{rss_sum:.0f} / {pss_sum:.0f} MB",
        "(shared pages counted per process / split between them)")
    for line in lines[1:]:
        if line.startswith("unit "):
            _, pss, own, unit = line.split()
            row(f"    {unit}", f"{int(pss) / 1024:.1f} MB", f"PSS (its share); {int(own) / 1024:.1f} MB resident set")
    return resident


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", choices=RELEASES, action="append", help="measure only this release (repeat)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"turns of plain install and fresh converges of 1 and 100 domains (default {ROUNDS}; 1 for a quick look at "
                             "the other figures)")
    args = parser.parse_args()
    releases = args.release or list(RELEASES)
    lab = Lab()
    started = lab.up()
    figures = {}
    try:
        for release in releases:
            print(f"\n== Debian {release}", flush=True)
            figures[release] = measure(lab, release, args.rounds)
    finally:
        if started:
            lab.down()
    print("\n== side by side", flush=True)
    print(f"{'figure':<40}" + "".join(f"{r:>12}" for r in figures) + "  target", flush=True)
    for key, label, shown, target in (
            ("ratio", "fresh converge / plain apt-get", "{:.2f}", f"<= {TARGETS['ratio']}"),
            ("noop", "no-op re-run", "{:.1f} s", f"<= {TARGETS['noop']:.0f} s, 0 changes"),
            ("verify_first", "verify, first contact", "{:.1f} s",
             f"<= {TARGETS['verify']:.0f} s (greet pause 3 s)"),
            ("verify", "verify, again", "{:.1f} s", f"<= {TARGETS['verify']:.0f} s"),
            ("memory_before", "stack resident set, before mail", "{:.0f} MB", f"<= {TARGETS['memory']} MB"),
            ("memory_after", "stack resident set, after mail", "{:.0f} MB", f"<= {TARGETS['memory']} MB"),
            ("big_ratio", "100 domains / 1 domain", "{:.2f}", f"<= {TARGETS['big_ratio']}"),
            ("noop_big", "no-op re-run, 100 domains", "{:.1f} s", f"<= {TARGETS['noop_big']:.0f} s, 0 changes")):
        print(f"{label:<40}" + "".join(f"{shown.format(f[key]):>12}" for f in figures.values()) + f"  {target}",
              flush=True)


def measure(lab: Lab, release: str, rounds: int) -> dict[str, float]:
    """Every figure for hosts of one release; returns the ones with targets."""
    made: list[TestHost] = []

    def new_host(name: str) -> TestHost:
        made.append(lab.new_host(f"{release[:4]}-{name}", release=release))
        return made[-1]

    def drop(host: TestHost) -> None:
        """Remove a host once measured, so idle mail stacks do not share the CPU with the next one."""
        made.remove(host)
        lab.remove_host(host.name)

    try:
        with tempfile.TemporaryDirectory(prefix="mailhost-bench-") as tmp:
            tmp = Path(tmp)
            # Warm the apt proxy so neither side of the comparison pays for downloads.
            warm = new_host("bench-warm")
            small = make_mail_env(lab, warm, tmp / "warm", domains=1)
            packages = all_packages(load_spec(small.spec_path))
            install = ("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                       "--no-install-recommends " + " ".join(packages))
            warm.ssh(install, timeout=3600)
            drop(warm)

            # apt's own time varies by several seconds from one run to the next here, and the machine's load
            # drifts, so the plain install and the converges of 100 domains and of 1 are timed in turns on fresh
            # hosts, and the medians compared. Each host goes (and the big one's zones with it) once measured.
            apt_times, converge_times, big_times = [], [], []
            retried: list[str] = []  # converges whose certbot job asked again
            shared = sha512_crypt("benchmark", "bench@example.org")
            for turn in range(1, rounds + 1):
                plain = new_host(f"bench-apt{turn}")
                start = time.monotonic()
                plain.ssh(install, timeout=3600)
                apt_times.append(time.monotonic() - start)
                drop(plain)
                big = new_host(f"bench-big{turn}")
                env_big = make_mail_env(lab, big, tmp / f"big{turn}", domains=100, mailboxes_per_domain=10,
                                        shared_hash=shared)
                big_times.append(run_deploy([big], {"spec": str(env_big.spec_path), "verify": False}).check().seconds)
                retried += [f"100 domains, turn {turn}"] * certbot_retries(big)
                if turn == rounds:
                    noop_big = run_deploy([big], {"spec": str(env_big.spec_path), "verify": False}).check()
                drop(big)
                for zone in env_big.domains:
                    lab.dns.remove_zone(zone)
                one = new_host(f"bench-one{turn}")
                env = make_mail_env(lab, one, tmp / f"one{turn}", domains=1, mailboxes_per_domain=1)
                converge_times.append(run_deploy([one], {"spec": str(env.spec_path), "verify": False}).check().seconds)
                retried += [f"1 domain, turn {turn}"] * certbot_retries(one)
                if turn < rounds:
                    drop(one)  # the last one stays for the figures below

            def per_turn(times: list[float]) -> str:
                return "median of " + ", ".join(f"{t:.1f}" for t in times)
            fresh_seconds = statistics.median(converge_times)
            row("plain apt-get install of the same packages", f"{statistics.median(apt_times):.1f} s",
                per_turn(apt_times))
            row("fresh converge, 1 domain / 1 mailbox", f"{fresh_seconds:.1f} s", per_turn(converge_times))
            ratio = fresh_seconds / statistics.median(apt_times)
            row("  ratio to plain apt-get install", f"{ratio:.2f}",
                f"target <= {TARGETS['ratio']} (per turn: " + ", ".join(f"{c / a:.2f}" for a, c in zip(apt_times, converge_times))
                + ")")
            row("fresh converge, 100 domains / 1,000 mailboxes", f"{statistics.median(big_times):.1f} s",
                per_turn(big_times))
            big_ratio = statistics.median(big_times) / fresh_seconds
            row("  ratio to 1 domain / 1 mailbox", f"{big_ratio:.2f}",
                f"target <= {TARGETS['big_ratio']} (per turn: " + ", ".join(f"{b / c:.2f}" for b, c in zip(big_times, converge_times))
                + ")")
            row("  certbot asked again after a failed issuance", str(len(retried)), ", ".join(retried))
            row("no-op re-run, 100 domains / 1,000 mailboxes", f"{noop_big.seconds:.1f} s",
                f"target <= {TARGETS['noop_big']:.0f} s, 0 changes ({len(noop_big.changed)} changes)")
            noop = run_deploy([one], {"spec": str(env.spec_path), "verify": False}).check()
            row("no-op re-run", f"{noop.seconds:.1f} s",
                f"target <= {TARGETS['noop']:.0f} s, 0 changes ({len(noop.changed)} changes)")
            memory_before = memory(one, "before any mail", f"resident set; target <= {TARGETS['memory']} MB")
            target = Target(load_spec(env.spec_path), ssh_runner(
                f"root@{one.address}", str(one.ssh_key), ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]))
            verify_seconds = []
            for when in ("after converge (the deploy's last stage)", "again (postscreen has let us in)"):
                start = time.monotonic()
                report = verify(target)
                verify_seconds.append(time.monotonic() - start)
                row(f"verify {when}", f"{verify_seconds[-1]:.1f} s", f"{report.counts()}")
            start = time.monotonic()
            one.ssh(SETTLED, timeout=400)
            row("  until its connections' processes have ended", f"{time.monotonic() - start:.0f} s")
            memory_after = memory(one, "after verify's mail",
                                  f"resident set; target <= {TARGETS['memory']} MB (" + ", ".join(SERVICES) + ")")
    finally:
        for host in list(made):
            lab.remove_host(host.name)
    return {"ratio": ratio, "noop": noop.seconds, "verify_first": verify_seconds[0], "verify": verify_seconds[1],
            "memory_before": memory_before, "memory_after": memory_after,
            "big_ratio": big_ratio, "noop_big": noop_big.seconds}


if __name__ == "__main__":
    main()
