#!/usr/bin/env python3
"""Where a fresh converge spends its time: one lab host of a release, deployed once (verify off), each line
of pyinfra's output stamped as it arrives; prints the phases (connect and prepare, each operation) longest
first. A tool for finding what to speed up, next to `converge.py`, which measures the targets.

    .venv/bin/python benchmarks/converge_profile.py [--release trixie] [--top 25] [--noop] [--domains N] [--log FILE]

`--noop` profiles the re-run after it instead, with pyinfra's debug log, so that each fact's round trip
shows: a no-op's time is mostly reading facts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import Lab  # noqa: E402
from lab.config import DEFAULT_RELEASE, RELEASES  # noqa: E402
from lab.deploys import REPO, inventory_file  # noqa: E402
from lab.mailenv import make_mail_env  # noqa: E402
from mailhost.passwords import sha512_crypt  # noqa: E402

START = "--> Starting operation: "


def stamped_deploy(argv: list[str]) -> list[tuple[float, str]]:
    """Run pyinfra; every output line with the seconds since start at which it arrived."""
    start, lines = time.monotonic(), []
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip()))
    if proc.returncode:
        sys.exit("\n".join(text for _, text in lines[-40:]) + f"\npyinfra exited {proc.returncode}")
    return lines


def phases(lines: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """(seconds, phase): up to the first operation, then from each operation's start to the next's."""
    starts = [(t, text[len(START):]) for t, text in lines if text.startswith(START)]
    if not starts:
        return []
    marks = [(0.0, "connect, facts, plan (before the first operation)"), *starts, (lines[-1][0], "end")]
    return [(marks[i + 1][0] - t, what) for i, (t, what) in enumerate(marks[:-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--noop", action="store_true", help="profile the no-op re-run, line by line")
    parser.add_argument("--domains", type=int, default=1, help="mail domains (10 mailboxes each when more than 1)")
    parser.add_argument("--log", type=Path, help="also write every stamped line of the profiled run to this file")
    args = parser.parse_args()
    lab = Lab()
    started = lab.up()
    host = lab.new_host(f"prof-{args.release[:4]}", release=args.release)
    try:
        with tempfile.TemporaryDirectory(prefix="mailhost-prof-") as tmp:
            big = args.domains > 1
            env = make_mail_env(lab, host, Path(tmp), domains=args.domains, mailboxes_per_domain=10 if big else 1,
                                shared_hash=sha512_crypt("benchmark", "bench@example.org") if big else None)
            inventory = inventory_file([host], {"spec": str(env.spec_path), "verify": False}, Path(tmp))
            argv = [str(Path(sys.executable).with_name("pyinfra")), str(inventory), "deploy.py", "-y"]
            lines = stamped_deploy(argv)
            if args.noop:
                lines = stamped_deploy([*argv, "--debug"])
    finally:
        lab.remove_host(host.name)
        if started:
            lab.down()
    total = lines[-1][0]
    if args.log:
        args.log.write_text("".join(f"{t:8.3f} {text}\n" for t, text in lines))
    if args.noop:  # each line charged with the time until the next: a fact's line carries its round trip
        gaps = [(lines[i + 1][0] - t, text[:110]) for i, (t, text) in enumerate(lines[:-1])]
        facts = sum(1 for _, text in lines if "Getting fact" in text)
        print(f"no-op re-run on Debian {args.release}: {total:.1f} s, {facts} facts read; longest gaps after a line:")
        for seconds, what in sorted(gaps, reverse=True)[:args.top]:
            print(f"{seconds:7.2f} s  {what}")
        return
    timed = phases(lines)
    print(f"fresh converge on Debian {args.release}: {total:.1f} s, {len(timed) - 1} operations")
    for seconds, what in sorted(timed, reverse=True)[:args.top]:
        print(f"{seconds:7.2f} s {100 * seconds / total:5.1f} %  {what}")


if __name__ == "__main__":
    main()
