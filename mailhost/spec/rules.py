"""Rules that span fields (domains exist, one password source, files readable, no loops...), run once every
field is valid on its own; each problem is (field path, message)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..resolver import root_hints_lines, trust_anchor_lines
from ..services import ALWAYS_ON_PORTS
from .model import Alias, Spec
from .values import control_free, shown


def cross_checks(spec: Spec) -> list[tuple[str, str]]:
    """Rules that span fields: domains exist, no duplicates, exactly one password source..."""
    base_dir = spec.base_dir
    problems = []
    domains = spec.domain_names
    for i, name in enumerate(domains):
        if name in domains[:i]:
            problems.append((f"domains[{i}].name", f"{shown(name)} is listed twice"))
    if not spec.domains:
        problems.append(("domains", "needs at least one domain"))
    if not spec.mailboxes:
        problems.append(("mailboxes", "needs at least one mailbox"))
    seen: set[str] = set()
    for i, box in enumerate(spec.mailboxes):
        path = f"mailboxes[{i}]"
        if box.address in seen:
            problems.append((f"{path}.address", f"{shown(box.address)} is listed twice"))
        seen.add(box.address)
        if box.address.split("@")[1] not in domains:
            problems.append((f"{path}.address", f"{shown(box.address)} is not in one of the mail domains "
                                                f"({', '.join(domains)})"))
        sources = [s for s in ("password_hash", "password_env", "password_file") if getattr(box, s)]
        if len(sources) != 1:
            problems.append((path, "needs exactly one of password_hash, password_env, password_file"
                                   + (f" (has {', '.join(sources)})" if sources else "")))
        elif box.password_env and box.password_env not in os.environ:
            problems.append((f"{path}.password_env", f"environment variable {box.password_env} is not set"))
        elif box.password_env:
            if problem := _password_problem(os.environ[box.password_env]):
                problems.append((f"{path}.password_env", f"environment variable {box.password_env} {problem}"))
        elif box.password_file:
            problem = _file_problem(base_dir / box.password_file)
            if problem is None:
                problem = _password_problem((base_dir / box.password_file).read_text().rstrip("\n"))
            if problem:
                problems.append((f"{path}.password_file", f"{shown(box.password_file)} {problem}"))
    for i, alias in enumerate(spec.aliases):
        path = f"aliases[{i}]"
        if alias.source.split("@")[1] not in domains:
            problems.append((f"{path}.source", f"{shown(alias.source)} is not in one of the mail domains"))
        if alias.source in seen:
            problems.append((f"{path}.source", f"{shown(alias.source)} is also a mailbox"))
        if not alias.destinations:
            problems.append((f"{path}.destinations", "needs at least one destination"))
    sources = [a.source for a in spec.aliases]
    for i, source in enumerate(sources):
        if source in sources[:i]:
            problems.append((f"aliases[{i}].source", f"{shown(source)} is listed twice"))
    problems += _alias_loops(spec.aliases)
    problems += _twice("dns.zones", spec.dns.zones) + _dkim_selector_problems(spec)
    if spec.forwarding.srs_domain and spec.forwarding.srs_domain not in domains:
        problems.append(("forwarding.srs_domain", f"{shown(spec.forwarding.srs_domain)} is not one of the mail "
                                                  "domains (bounces to rewritten senders must come back here)"))
    if spec.tls.ca_bundle and (problem := _file_problem(base_dir / spec.tls.ca_bundle)):
        problems.append(("tls.ca_bundle", f"{shown(spec.tls.ca_bundle)} {problem}"))
    if spec.features.clamav:
        problems.append(("features.clamav", "virus scanning is not supported yet (its signature updates need "
                                            "the ClamAV mirrors); leave it false"))
    problems += _dns_checks(spec)
    if spec.verify.probe_mailbox and spec.probe_mailbox is None:
        problems.append(("verify.probe_mailbox", f"{shown(spec.verify.probe_mailbox)} is not a mailbox with "
                                                 "password_env or password_file (verify must log in as it)"))
    files = [("verify.trust_anchor", spec.verify.trust_anchor, trust_anchor_lines),
             ("verify.ca_bundle", spec.verify.ca_bundle, None),
             ("resolver.trust_anchor", spec.resolver.trust_anchor, trust_anchor_lines),
             ("resolver.root_hints", spec.resolver.root_hints, root_hints_lines)]
    for path, value, parse in files:
        if value and (problem := _file_problem(base_dir / value) or _records_problem(base_dir / value, parse)):
            problems.append((path, f"{shown(value)} {problem}"))
    reserved = {*ALWAYS_ON_PORTS, spec.firewall.ssh_port}
    for i, rule in enumerate(spec.firewall.allow):
        if rule.port in reserved and rule.proto == "tcp":
            problems.append((f"firewall.allow[{i}].port", f"{rule.port} is opened by mailhost already"))
    return problems


def _records_problem(path: Path, parse) -> str | None:
    """What `parse` (trust anchor, root hints) finds wrong in a file of DNS records (None: nothing, or no parser)."""
    if parse is None:
        return None
    try:
        parse(path.read_text())
    except ValueError as exc:
        return "is not usable: " + "".join(c if c.isprintable() else " " for c in str(exc))[:200]
    return None


def _dkim_selector_problems(spec: Spec) -> list[tuple[str, str]]:
    """A selector names one key of a domain: not twice, not for both algorithms (one DNS record each). A domain
    that signs with Ed25519 signs with RSA too: receivers that do not know Ed25519 ignore its signature."""
    problems = _twice("dkim.selectors", spec.dkim.selectors)
    problems += _twice("dkim.ed25519_selectors", spec.dkim.ed25519_selectors)
    for i, domain in enumerate(spec.domains):
        problems += _twice(f"domains[{i}].dkim_selectors", domain.dkim_selectors or [])
        problems += _twice(f"domains[{i}].dkim_ed25519_selectors", domain.dkim_ed25519_selectors or [])
        own = domain.dkim_selectors is not None or domain.dkim_ed25519_selectors is not None
        rsa_path, ed25519_path = ((f"domains[{i}].dkim_selectors", f"domains[{i}].dkim_ed25519_selectors") if own
                                  else ("dkim.selectors", "dkim.ed25519_selectors"))
        rsa, ed25519 = spec.selectors(domain), spec.ed25519_selectors(domain)
        for name in sorted(set(rsa) & set(ed25519)):
            problems.append((ed25519_path, f"{shown(name)} is also an RSA selector (a selector names one key: "
                                           "give the Ed25519 key another name)"))
        if ed25519 and not rsa:
            problems.append((rsa_path, "Ed25519 needs an RSA selector beside it (receivers that do not know "
                                       "Ed25519, RFC 8463, would see the mail unsigned)"))
    return list(dict.fromkeys(problems))  # the defaults' problems once, not once per domain


def _twice(path: str, values: list[str]) -> list[tuple[str, str]]:
    return [(f"{path}[{i}]", f"{shown(v)} is listed twice") for i, v in enumerate(values) if v in values[:i]]


def _alias_loops(aliases: list[Alias]) -> list[tuple[str, str]]:
    """Aliases that forward, through each other, back to themselves (Postfix would bounce that mail)."""
    forwards = {a.source: a.destinations for a in aliases}
    problems = []
    for i, alias in enumerate(aliases):
        if loop := _way_back(alias.source, forwards):
            problems.append((f"aliases[{i}].destinations", "forwards in a loop: " + shown(" -> ".join(loop), 200)))
    return problems


def _way_back(start: str, forwards: dict[str, list[str]]) -> list[str] | None:
    """The forwarding path from `start` back to itself (None: there is none)."""
    paths, todo = {start: [start]}, [start]
    while todo:
        current = todo.pop()
        for target in forwards.get(current, []):
            if target == start:
                return paths[current] + [start]
            if target in forwards and target not in paths:
                paths[target] = paths[current] + [target]
                todo.append(target)
    return None


def _file_problem(path: Path) -> str | None:
    """Why a file the spec names cannot be used (None: it can): it must be a regular, readable, non-empty
    UTF-8 file. A FIFO or device is never opened (reading one could hang or never end)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return "is not a regular file"
        data = path.read_bytes()
    except OSError as exc:
        return f"is not a readable file ({exc.strerror or exc})"
    except ValueError:  # a NUL in the path
        return "is not a readable file (not a valid path)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    return None if text.strip() else "is empty"


def _password_problem(password: str) -> str | None:
    """What makes a password unusable (never the password itself)."""
    if not password:
        return "holds an empty password"
    if not control_free(password):
        return "holds a line break or another control character inside the password"
    return None


def _dns_checks(spec: Spec) -> list[tuple[str, str]]:
    problems = []
    dns = spec.dns
    for path, spf in [("dns.spf", dns.spf)] + [(f"domains[{i}].spf", d.spf) for i, d in enumerate(spec.domains)]:
        if spf is not None and not re.fullmatch(r"v=spf1( [ -~]*)?", spf):
            problems.append((path, f"{shown(spf)} is not an SPF record (it must start with 'v=spf1' and hold "
                                   "printable ASCII only)"))
    provider = dns.provider
    if provider is None:
        return problems
    for name in ("tsig_key_file", "api_token_file"):
        value = getattr(provider, name, None)
        if value and (problem := _file_problem(spec.base_dir / value)):
            problems.append((f"dns.provider.{name}", f"{shown(value)} {problem}"))
    if provider.kind == "cloudflare" and not provider.api_token_file and provider.api_token_env not in os.environ:
        problems.append(("dns.provider.api_token_env",
                         f"environment variable {provider.api_token_env} is not set (the Cloudflare API token)"))
    outside = "is outside the DNS zones ({}); add its zone to dns.zones".format(", ".join(spec.dns_zones))
    if dns.host_addresses and spec.zone_of(spec.hostname) is None:
        problems.append(("hostname", f"{shown(spec.hostname)} {outside}, or set dns.host_addresses: false"))
    for i, domain in enumerate(spec.domains):
        if spec.zone_of(domain.name) is None:
            problems.append((f"domains[{i}].name", f"{shown(domain.name)} {outside}"))
    for i, key in enumerate(dns.adopt):
        if spec.zone_of(key.split()[0].lstrip("*.")) is None:
            problems.append((f"dns.adopt[{i}]", f"{shown(key.split()[0])} {outside}"))
    return problems


