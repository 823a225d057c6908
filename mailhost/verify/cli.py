"""`mailhost verify SPEC`: the outside-in report, as text for people or JSON for CI."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time

from mailhost.spec import spec_or_none

from . import Target, host_addresses, verify
from .checks.dns import resolver


# ssh's own failures to reach the host (exit 255), which another try may not meet; a refused login is not one.
UNREACHED = re.compile(r"connect to host|Connection (timed out|refused|reset|closed)|banner exchange|"
                       r"kex_exchange_identification")
SSH_TRIES = 3


def ssh_runner(target: str, key: str | None, options: list[str]):
    """Run a shell command on the host over SSH; its stdout (on-host checks read, never write). A connection
    that fails before it starts is tried again (each on-host check is its own connection, and one lost
    SYN should not turn the report red); after SSH_TRIES the error says what ssh said."""
    base = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
    base += ["-i", key] if key else []
    for option in options:
        base += ["-o", option]

    def run(command: str) -> str:
        attempt = 1
        while True:
            done = subprocess.run([*base, target, command], capture_output=True, text=True, timeout=60)
            if done.returncode != 255:
                return done.stdout
            if attempt == SSH_TRIES or not UNREACHED.search(done.stderr):
                raise OSError(f"ssh {target}: {done.stderr.strip()}"
                              + (f" (tried {attempt} times)" if attempt > 1 else ""))
            time.sleep(attempt)
            attempt += 1
    return run


def _verify(args: argparse.Namespace) -> int:
    spec = spec_or_none(args.spec)
    if spec is None:
        return 2
    target = Target(spec)
    if not args.no_host:
        addresses = host_addresses(target, resolver(spec.dns.resolvers))  # as the world resolves the host
        target.run = ssh_runner(args.ssh or f"root@{addresses[0] if addresses else spec.hostname}", args.ssh_key,
                                args.ssh_option)
    report = verify(target)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.text())
    return report.exit_code(args.strict)


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="check the deployment from outside (DNS, DNSSEC, TLS, SMTP, real mail) "
                                      "and on the host")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings")
    p.add_argument("--ssh", help="SSH target for on-host checks (default: root@ the host's address)")
    p.add_argument("--ssh-key", help="SSH private key")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPTION", help="extra ssh -o option")
    p.add_argument("--no-host", action="store_true", help="skip the on-host checks")
    p.set_defaults(func=_verify)
