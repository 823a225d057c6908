"""`./dev lab ...` (`python -m lab ...`): the lab for people (the demo, poking around). Tests use the fixtures."""

from __future__ import annotations

import argparse
import json
import time

from . import Lab, LabError
from .config import DEFAULT_RELEASE, RELEASES


def main(argv: list[str] | None = None) -> int:
    lab = argparse.ArgumentParser(prog="./dev lab", description="the local test lab (hosts, DNS, ACME, remote receiver)")
    verbs = lab.add_subparsers(dest="lab_verb", required=True)
    verbs.add_parser("up", help="start the lab (builds cached images on first use)")
    verbs.add_parser("down", help="stop the lab and remove every host")
    status = verbs.add_parser("status", help="what runs, and where")
    status.add_argument("--json", action="store_true")
    host = verbs.add_parser("host", help="test hosts")
    host_verbs = host.add_subparsers(dest="host_verb", required=True)
    new = host_verbs.add_parser("new", help="boot a fresh Debian host")
    new.add_argument("name")
    new.add_argument("--kind", choices=["container", "vm"], default="container")
    new.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE,
                     help=f"Debian release, by suite name (default {DEFAULT_RELEASE})")
    new.add_argument("--mail", action="store_true",
                     help="also create lab zones pointing at it and a spec for it (used by inventory/lab.py)")
    rm = host_verbs.add_parser("rm", help="remove a host")
    rm.add_argument("name")
    return run(lab.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    lab = Lab()
    try:
        if args.lab_verb == "up":
            start = time.monotonic()
            started = lab.up()
            print(f"lab {'started' if started else 'already running'} in {time.monotonic() - start:.1f}s")
            _print_status(lab.status())
        elif args.lab_verb == "down":
            lab.down()
            print("lab down: every host, daemon, namespace and link removed")
        elif args.lab_verb == "status":
            status = lab.status()
            print(json.dumps(status, indent=2)) if args.json else _print_status(status)
            return 0 if status["up"] else 3
        elif args.host_verb == "new":
            start = time.monotonic()
            host = lab.new_host(args.name, args.kind, release=args.release)
            print(f"{host.kind} host {host.name} ({host.release}) at {host.address} answered SSH in {time.monotonic() - start:.1f}s")
            if args.mail:
                from .mailenv import make_mail_env
                env = make_mail_env(lab, host, lab.spec_dir(host.name))
                print(f"  mail host {env.hostname} for {', '.join(env.domains)}; spec {env.spec_path}")
            print(f"  ssh -i {host.ssh_key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                  f"root@{host.address}")
        elif args.host_verb == "rm":
            lab.remove_host(args.name)
            print(f"host {args.name} removed")
    except LabError as exc:
        print(f"lab: {exc}")
        return 2
    return 0


def _print_status(status: dict) -> None:
    print(f"lab is {'up' if status['up'] else 'down'}")
    for name, d in status["daemons"].items():
        print(f"  {name:<16} pid {d['pid']:<8} {'running' if d['alive'] else 'DEAD'}")
    for name, h in status["hosts"].items():
        print(f"  host {name:<11} {h['kind']:<10} {h['release']:<9} {h['address']:<14} {'running' if h['alive'] else 'DEAD'}")
    if status["up"]:
        print(f"  resolver {status['resolver']}, nameserver {status['nameserver']}, "
              f"ACME {status['acme_directory']}")
        print(f"  CA bundle {status['ca_bundle']}, TSIG key {status['tsig_key_file']}")
