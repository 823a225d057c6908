"""The `mailhost` command."""

from __future__ import annotations

import argparse
import json
import sys

from .spec import spec_or_none


def _spec_check(args: argparse.Namespace) -> int:
    spec = spec_or_none(args.spec)
    if spec is None:
        return 2
    print(f"{args.spec}: ok ({spec.hostname}: {len(spec.domains)} domain(s), {len(spec.mailboxes)} mailbox(es), "
          f"{len(spec.aliases)} alias(es))")
    return 0


def _spec_schema(args: argparse.Namespace) -> int:
    from .spec import json_schema
    print(json.dumps(json_schema(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailhost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    spec = sub.add_parser("spec", help="the deployment spec").add_subparsers(dest="spec_verb", required=True)
    check = spec.add_parser("check", help="validate a spec file (no network, no host)")
    check.add_argument("spec")
    check.set_defaults(func=_spec_check)
    spec.add_parser("schema", help="print the spec's JSON Schema").set_defaults(func=_spec_schema)
    from .dns.cli import add_parser as add_dns
    add_dns(sub)
    from .verify.cli import add_parser as add_verify
    add_verify(sub)
    from .reports import add_parser as add_reports
    add_reports(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
