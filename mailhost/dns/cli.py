"""`mailhost dns plan|apply SPEC`: DNS-only runs, without touching the host.

Values only the host can tell (its DKIM keys, its address when the spec has none) are not read
here: records that hold them are kept as they are, and new ones wait for the next deploy.
"""

from __future__ import annotations

import argparse
import json
import sys

from mailhost.spec import spec_or_none

from .providers import DnsError
from .records import HostFacts
from .sync import DnsSync


def _run(args: argparse.Namespace) -> int:
    spec = spec_or_none(args.spec)
    if spec is None:
        return 2
    if spec.dns.provider is None:
        print(f"{args.spec}: dns.provider is not set, so mailhost does not manage DNS", file=sys.stderr)
        return 2
    apply = args.verb == "apply"
    try:
        sync = DnsSync.for_spec(spec)
        provider = sync.provider
        states = sync.plan(HostFacts())
        if apply:
            states = sync.apply(states, force=args.force)
        reports = sync.signing_reports(states, apply and spec.dns.dnssec)
    except DnsError as exc:
        print(f"DNS: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"provider": provider.describe(), "applied": apply,
                          "zones": [s.plan.to_json() for s in states],
                          "dnssec": [r.to_json() for r in reports],
                          "requests": {"reads": provider.requests.reads, "writes": provider.requests.writes}},
                         indent=2))
    else:
        for state, report in zip(states, reports):
            print(f"zone {state.zone.name} ({provider.describe()}){' applied' if apply else ''}:")
            for line in state.plan.lines():
                print(f"  {line}")
            for line in report.lines():
                print(f"  DNSSEC: {line.split(': ', 1)[1] if line.startswith('zone ') else line.strip()}")
    unsafe = [s.plan.safety_problem(spec.dns.max_change_percent) for s in states]
    conflicts = any(s.plan.conflicts for s in states) or any(unsafe) and not args.force
    return 1 if not apply and conflicts else 0


def add_parser(sub) -> None:
    dns = sub.add_parser("dns", help="DNS records of a spec").add_subparsers(dest="verb", required=True)
    for verb, text in (("plan", "show what would change (reads only)"), ("apply", "make the changes")):
        p = dns.add_parser(verb, help=text)
        p.add_argument("spec")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if verb == "apply":
            p.add_argument("--force", action="store_true", help="apply even beyond dns.max_change_percent")
        p.set_defaults(func=_run, force=False)
