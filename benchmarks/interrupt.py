#!/usr/bin/env python3
"""Deploys killed at random points, each followed by a deploy that must converge with nothing lost.

    .venv/bin/python benchmarks/interrupt.py [--trials 10] [--release trixie] [--seed N]

Two kinds of trial, alternating:
- fresh: a new host's first deploy is killed (the controller dies: apt, keys, certbot, DNS, anything
  may be half done); the next deploy must exit 0 with verify's 0 errors, and the one after change nothing.
- live: a converged host holding mail gets a spec change (one more mailbox) whose deploy is killed; the
  next deploy must converge and verify green, the earlier mail must still be readable with the same
  password, and the DKIM keys and the certificate must be the very same files.
The kill comes after a random delay: up to the measured length of that kind of deploy. Prints a line a
trial and a summary; asserts nothing beyond the exit code (non-zero if any trial failed).
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from lab import Lab  # noqa: E402
from lab.config import DEFAULT_RELEASE, RELEASES  # noqa: E402
from lab.deploys import inventory_file, run_deploy  # noqa: E402
from lab.mailenv import make_mail_env  # noqa: E402
from mailclient import imap_fetch, send_inbound  # noqa: E402

KEPT_FILES = "sha256sum /etc/mailhost/dkim/*/* /etc/letsencrypt/live/*/fullchain.pem " \
             "/etc/letsencrypt/live/*/privkey.pem"


def killed_deploy(host, spec_path: Path, delay: float, tmp: Path) -> str:
    """Start `pyinfra <inventory> deploy.py` and SIGKILL it after `delay` s; the last line it printed."""
    inventory = inventory_file([host], {"spec": str(spec_path)}, tmp)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pyinfra")), str(inventory), "deploy.py", "-y"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return "(finished before the kill)"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out = proc.communicate()[0]
        started = [line for line in out.splitlines() if "Starting operation" in line]
        return started[-1].split("Starting operation: ")[-1] if started else "(before the first operation)"


def resolve_through_lab(lab: Lab) -> None:
    """Lab names resolve through the lab's DNS, as the end-to-end tests do."""
    original, parent = socket.getaddrinfo, lab.cfg.parent_zone.rstrip(".")

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and (host == parent or host.endswith("." + parent)):
            host = lab.dns.resolve(host, "A")[0].address
        return original(host, port, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10 ** 6)
    rng = random.Random(seed)
    lab = Lab()
    started = lab.up()
    resolve_through_lab(lab)
    failures, made = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="mailhost-interrupt-") as tmp:
            tmp = Path(tmp)
            # The live host, converged once, with mail; its deploy time bounds the live kills.
            live = lab.new_host(f"intr-live-{uuid.uuid4().hex[:4]}", release=args.release)
            made.append(live)
            env = make_mail_env(lab, live, tmp / "live", domains=1, mailboxes_per_domain=1)
            fresh_seconds = run_deploy([live], {"spec": str(env.spec_path)}).check().seconds
            subject = f"kept {uuid.uuid4().hex}"
            send_inbound(lab, env.hostname, env.mailboxes[0], subject)
            imap_fetch(lab, env, env.mailboxes[0], subject)
            kept = live.ssh(KEPT_FILES).stdout
            print(f"seed {seed}; a fresh converge takes {fresh_seconds:.0f} s here", flush=True)
            for trial in range(1, args.trials + 1):
                kind = "fresh" if trial % 2 else "live"
                start = time.monotonic()
                try:
                    if kind == "fresh":
                        host = lab.new_host(f"intr-{trial}-{uuid.uuid4().hex[:4]}", release=args.release)
                        made.append(host)
                        fenv = make_mail_env(lab, host, tmp / f"fresh{trial}", domains=1, mailboxes_per_domain=1)
                        delay = rng.uniform(0.5, fresh_seconds)
                        where = killed_deploy(host, fenv.spec_path, delay, tmp)
                        run_deploy([host], {"spec": str(fenv.spec_path)}).check()
                        again = run_deploy([host], {"spec": str(fenv.spec_path)}).check()
                        assert not again.changed, f"the run after the repair changed {again.changed}"
                        lab.remove_host(host.name)
                        made.remove(host)
                    else:
                        spec = yaml.safe_load(env.spec_path.read_text())
                        address = f"extra{trial}@{spec['domains'][0]['name']}"
                        secret = env.spec_path.parent / "secrets" / address
                        secret.write_text(f"pw-{uuid.uuid4().hex}\n")
                        spec["mailboxes"].append({"address": address, "password_file": f"secrets/{address}"})
                        env.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
                        delay = rng.uniform(0.5, 12)
                        where = killed_deploy(live, env.spec_path, delay, tmp)
                        run_deploy([live], {"spec": str(env.spec_path)}).check()
                        assert subject.encode() in imap_fetch(lab, env, env.mailboxes[0], subject), "mail lost"
                        assert live.ssh(KEPT_FILES).stdout == kept, "DKIM keys or the certificate were made anew"
                    print(f"trial {trial:>2} {kind:<5} killed after {delay:5.1f} s in '{where}': converged, verify "
                          f"green, nothing lost ({time.monotonic() - start:.0f} s)", flush=True)
                except Exception as exc:  # noqa: BLE001 - a failed trial is reported, not raised
                    failures.append(trial)
                    print(f"trial {trial:>2} {kind:<5} FAILED: {str(exc)[-1500:]}", flush=True)
    finally:
        for host in made:
            lab.remove_host(host.name)
        if started:
            lab.down()
    print(f"{args.trials - len(failures)} of {args.trials} trials converged with nothing lost (seed {seed})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
