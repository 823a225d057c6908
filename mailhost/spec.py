"""The mail deployment spec: one YAML file -> a validated, typed `Spec`.

The dataclasses below are the single source of truth: `load_spec()` validates against
them (every error names its field path, unknown keys are errors), and `json_schema()`
publishes them for editors. Validation needs no network and touches no host.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import stat
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .services import ALWAYS_ON_PORTS, services_on


class SpecError(ValueError):
    """The spec is invalid; `.problems` lists (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec"):
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" if path else f"  {msg}" for path, msg in problems)
        super().__init__(f"{source} is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


# -- value checks: each turns a raw YAML value into a checked one or raises ValueError ----------------
def _show(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: repr, cut short (a message never repeats a huge value)."""
    return _cut(repr(value), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def _control_free(value: str) -> bool:
    """No control characters (line breaks, NUL, escapes): every string ends up in a file or a command."""
    return not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c in "\u2028\u2029" for c in value)


class Check:
    schema: dict = {}

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _domain(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a valid {what}: expected a string")
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError(f"{_show(value)} is not a valid {what}")
    return name


class DomainName(Check):
    schema = {"type": "string", "format": "hostname", "pattern": r"^[A-Za-z0-9.-]+\.?$"}

    def __call__(self, value):
        return _domain(value, "domain name")


class Hostname(Check):
    schema = DomainName.schema

    def __call__(self, value):
        return _domain(value, "fully qualified host name (e.g. mail.example.org)")


class Email(Check):
    schema = {"type": "string", "format": "email"}

    def __call__(self, value):
        if not isinstance(value, str) or value.count("@") != 1:
            raise ValueError(f"{_show(value)} is not a valid email address")
        local, domain = value.split("@")
        # RFC 5321's dot-atom, at most 64 octets; no leading '#' (a comment line in Postfix's maps).
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", local) or local.startswith((".", "#")) \
                or local.endswith(".") or ".." in local:
            raise ValueError(f"{_show(value)} is not a valid email address (local part: at most 64 letters, digits "
                             "and !#$%&'*+/=?^_`{|}~.-, not starting with '#' or '.')")
        try:
            return f"{local.lower()}@{_domain(domain, 'domain name')}"
        except ValueError:
            raise ValueError(f"{_show(value)} is not a valid email address (domain)") from None


class AliasSource(Check):
    """An address, or `@domain` for a catch-all."""
    schema = {"type": "string", "pattern": r"^[^@\s]*@[A-Za-z0-9.-]+$"}

    def __call__(self, value):
        if isinstance(value, str) and value.startswith("@"):
            return "@" + _domain(value[1:], "domain name")
        return Email()(value)


class Size(Check):
    """Bytes, or a number with K, M, G (powers of 1024)."""
    schema = {"type": ["string", "integer"], "pattern": r"^[0-9]+[KMGkmg]?$"}

    MAX = 2 ** 50  # a petabyte: beyond any mailbox or message, and within every daemon's integers

    def __call__(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        else:
            m = re.fullmatch(r"([0-9]{1,16})\s*([KMG]?)i?B?", str(value).strip(), re.I)
            size = int(m[1]) * 1024 ** " KMG".index((m[2] or " ").upper()) if m and not isinstance(value, bool) else 0
        if not 0 < size <= self.MAX:
            raise ValueError(f"{_show(value)} is not a size (use e.g. 25M, 2G or a number of bytes)")
        return size


class Duration(Check):
    """Seconds, or a number with s, m, h, d, w."""
    schema = {"type": ["string", "integer"], "pattern": r"^[0-9]+[smhdw]?$"}

    MAX = 2 ** 31 - 1  # DNS TTLs (RFC 2181) and Fail2Ban's times are 31-bit

    def __call__(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        else:
            m = re.fullmatch(r"([0-9]{1,12})([smhdw]?)", str(value).strip())
            seconds = int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]] \
                if m and not isinstance(value, bool) else 0
        if not 0 < seconds <= self.MAX:
            raise ValueError(f"{_show(value)} is not a duration (use e.g. 10m, 1h, 7d or seconds, "
                             f"at most {self.MAX})")
        return seconds


class Port(Check):
    schema = {"type": "integer", "minimum": 1, "maximum": 65535}

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError(f"{_show(value)} is not a port number (1-65535)")
        return value


class IPAddress(Check):
    def __init__(self, version: int):
        self.version = version
        self.schema = {"type": "string", "format": f"ipv{version}"} if version else {"type": "string"}

    def __call__(self, value):
        if "%" in str(value):
            raise ValueError(f"{_show(value)}: a scope id (%...) means nothing outside one host's links")
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError:
            raise ValueError(f"{_show(value)} is not an IP{f'v{self.version}' if self.version else ''} address") from None
        if self.version and address.version != self.version:
            raise ValueError(f"{_show(value)} is not an IPv{self.version} address")
        return str(address)


class Network(Check):
    schema = {"type": "string"}

    def __call__(self, value):
        if "%" in str(value):
            raise ValueError(f"{_show(value)}: a scope id (%...) means nothing outside one host's links")
        try:
            return str(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise ValueError(f"{_show(value)} is not an address or network (e.g. 192.0.2.0/24)") from None


class HttpsUrl(Check):
    schema = {"type": "string", "format": "uri", "pattern": "^https://"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"https://[!-.0-~]+(/[!-~]*)?", value):
            raise ValueError(f"{_show(value)} is not an https:// URL")
        return value


class PasswordHash(Check):
    """A Dovecot password hash with its scheme prefix, e.g. {ARGON2ID}$argon2id$... or {SHA512-CRYPT}$6$..."""
    schema = {"type": "string", "pattern": r"^\{[A-Z0-9.-]+\}[A-Za-z0-9./$=,+-]+$"}
    STRONG = ("ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT")

    def __call__(self, value):
        m = re.fullmatch(r"\{([A-Z0-9.-]+)\}([A-Za-z0-9./$=,+-]+)", value) if isinstance(value, str) else None
        if not m:  # the value is not shown: it may be a password typed in the wrong field
            raise ValueError("is not a password hash: expected {SCHEME}hash as printed by `doveadm pw` (letters, "
                             "digits and ./$=,+- after the scheme)")
        if m[1] not in self.STRONG:
            raise ValueError(f"scheme {m[1]} is too weak; use one of {', '.join(self.STRONG)}")
        return value


class EnvName(Check):
    schema = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(self.schema["pattern"], value):
            # Not shown: a password or token typed here instead of the variable's name would be printed.
            raise ValueError("is not an environment variable name (letters, digits and _): it names the variable "
                             "that holds the secret, not the secret itself")
        return value


class DnsLabel(Check):
    schema = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,62}$"}

    def __call__(self, value):
        if not isinstance(value, str) or not _LABEL.fullmatch(value.lower()):
            raise ValueError(f"{_show(value)} is not a DNS label (letters, digits, '-')")
        return value.lower()


def doc(text: str, default: Any = dataclasses.MISSING, **kw) -> Any:
    """A field with its documentation (shown in the JSON Schema)."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"doc": text}, **kw)
    return field(default=default, metadata={"doc": text}, **kw)


class Url(Check):
    """http(s) URL: API endpoints may be local (tests, proxies), so http is allowed here."""
    schema = {"type": "string", "format": "uri", "pattern": "^https?://"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"https?://[!-.0-~]+(/[!-~]*)?", value):
            raise ValueError(f"{_show(value)} is not an http(s):// URL")
        return value.rstrip("/")


class RecordKey(Check):
    """`NAME TYPE` of a record set, e.g. `example.org MX`."""
    schema = {"type": "string", "pattern": r"^\S+\s+[A-Za-z0-9]+$"}

    def __call__(self, value):
        parts = value.split() if isinstance(value, str) else []
        if len(parts) != 2 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", parts[1]):
            raise ValueError(f"{_show(value)} is not 'NAME TYPE' (e.g. 'example.org MX')")
        name = parts[0].lower().rstrip(".")
        if not all(re.fullmatch(r"\*|_?[a-z0-9-]{1,62}", label) for label in name.split(".")) or "." not in name:
            raise ValueError(f"{_show(value)}: {_show(parts[0])} is not a record name")
        return f"{name.lower().rstrip('.')} {parts[1].upper()}"


class Count(Check):
    """A whole number from `minimum` up."""

    def __init__(self, minimum: int):
        self.minimum = minimum
        self.schema = {"type": "integer", "minimum": minimum, "maximum": 2 ** 31 - 1}

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not self.minimum <= value <= 2 ** 31 - 1:
            raise ValueError(f"{_show(value)} is not a whole number from {self.minimum}")
        return value


class Percent(Check):
    schema = {"type": "integer", "minimum": 0, "maximum": 100}

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise ValueError(f"{_show(value)} is not a percentage (0-100)")
        return value


# -- the spec ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Addresses:
    ipv4: Annotated[str, IPAddress(4)] | None = doc("Public IPv4 address of the host (discovered when absent)", None)
    ipv6: Annotated[str, IPAddress(6)] | None = doc("Public IPv6 address of the host (discovered when absent)", None)


@dataclass(frozen=True)
class Domain:
    name: Annotated[str, DomainName()] = doc("A mail domain, e.g. example.org")
    dkim_selectors: list[Annotated[str, DnsLabel()]] | None = doc(
        "DKIM selectors for this domain (default: dkim.selectors)", None)
    spf: str | None = doc("SPF record of this domain (default: dns.spf)", None)


@dataclass(frozen=True)
class Mailbox:
    address: Annotated[str, Email()] = doc("The mailbox address; its domain must be one of `domains`")
    password_hash: Annotated[str, PasswordHash()] | None = doc(
        "Password hash ({ARGON2ID}..., {SHA512-CRYPT}...), e.g. from `doveadm pw -s ARGON2ID`", None)
    password_env: Annotated[str, EnvName()] | None = doc(
        "Name of an environment variable holding the password (read on the controller, hashed before upload)",
        None)
    password_file: str | None = doc("Path of a file holding the password (on the controller)", None)
    quota: Annotated[int, Size()] | None = doc("Mailbox quota, e.g. 2G (default: limits.default_quota)", None)


@dataclass(frozen=True)
class Alias:
    source: Annotated[str, AliasSource()] = doc("Address to forward, or @domain for a catch-all")
    destinations: list[Annotated[str, Email()]] = doc("Where it goes: our mailboxes or external addresses")


@dataclass(frozen=True)
class Limits:
    message_size: Annotated[int, Size()] = doc("Largest message accepted", 25 * 1024 ** 2)
    default_quota: Annotated[int, Size()] = doc("Quota of a mailbox that sets none", 1024 ** 3)


@dataclass(frozen=True)
class Tls:
    acme_directory: Annotated[str, HttpsUrl()] = doc(
        "ACME directory URL", "https://acme-v02.api.letsencrypt.org/directory")
    ca_bundle: str | None = doc(
        "PEM file (on the controller) of a private CA to trust for the ACME server and its certificates", None)
    contact: Annotated[str, Email()] | None = doc("ACME account contact (default: postmaster@first domain)", None)
    challenge: Literal["http-01"] = doc("ACME challenge type", "http-01")


@dataclass(frozen=True)
class Dkim:
    selectors: list[Annotated[str, DnsLabel()]] = doc("Selectors to sign with, for every domain", ["mail"])
    key_bits: Literal[1024, 2048, 3072, 4096] = doc("RSA key size of new keys", 2048)


@dataclass(frozen=True)
class Features:
    pop3: bool = doc("Offer POP3 (995)", False)
    managesieve: bool = doc("Offer ManageSieve (4190)", False)
    clamav: bool = doc("Virus scanning with ClamAV (needs ~1.5 GB RAM)", False)
    postscreen: bool = doc("Screen port 25 clients with postscreen", True)
    rspamd_controller: bool = doc(
        "Run rspamd's controller on 127.0.0.1:11334 (web UI through an SSH tunnel, `rspamc learn_*`); "
        "about 45 MB of memory", False)
    dnsbl: list[Annotated[str, DomainName()]] = doc(
        "DNS blocklists postscreen consults", ["zen.spamhaus.org"])


@dataclass(frozen=True)
class Fail2ban:
    enabled: bool = doc("Ban sources of repeated failed logins", True)
    bantime: Annotated[int, Duration()] = doc("How long a ban lasts", 3600)
    findtime: Annotated[int, Duration()] = doc("Window in which failures are counted", 600)
    maxretry: Annotated[int, Count(1)] = doc("Failures within findtime that trigger a ban", 5)
    ignore: list[Annotated[str, Network()]] = doc("Addresses/networks never banned", [])


@dataclass(frozen=True)
class FirewallRule:
    port: Annotated[int, Port()] = doc("Port to open")
    proto: Literal["tcp", "udp"] = doc("Protocol", "tcp")
    sources: list[Annotated[str, Network()]] = doc("Allowed sources (empty: everyone)", [])


@dataclass(frozen=True)
class Firewall:
    ssh_port: Annotated[int, Port()] = doc("SSH port (always kept open, so the operator is never locked out)", 22)
    ssh_sources: list[Annotated[str, Network()]] = doc("Restrict SSH to these sources (empty: everyone)", [])
    allow: list[FirewallRule] = doc("Extra ports to open", [])


@dataclass(frozen=True)
class DnsProvider:
    kind: Literal["cloudflare", "route53", "rfc2136"] = doc("Which DNS provider holds the zones")
    server: str | None = doc("rfc2136: primary nameserver that takes updates (address or name)", None)
    port: Annotated[int, Port()] = doc("rfc2136: its port", 53)
    tsig_key_file: str | None = doc(
        "rfc2136: file with the TSIG key in BIND syntax (key \"name\" { algorithm ...; secret ...; };)", None)
    api_token_env: Annotated[str, EnvName()] = doc(
        "cloudflare: environment variable holding the API token (Zone.DNS edit, Zone.DNSSEC edit)",
        "CLOUDFLARE_API_TOKEN")
    api_token_file: str | None = doc("cloudflare: file holding the API token instead (on the controller)", None)
    aws_profile: str | None = doc("route53: AWS profile (default: the standard AWS credential chain)", None)
    endpoint: Annotated[str, Url()] | None = doc(
        "cloudflare/route53: API base URL instead of the public one (tests, API proxies)", None)


@dataclass(frozen=True)
class Dmarc:
    policy: Literal["none", "quarantine", "reject"] = doc("What receivers do with mail that fails DMARC",
                                                          "quarantine")
    subdomain_policy: Literal["none", "quarantine", "reject"] | None = doc(
        "Policy for subdomains (default: the same as policy)", None)
    rua: list[Annotated[str, Email()]] = doc(
        "Where aggregate reports go (default: postmaster@ the domain if that is ours, else its first mailbox)", [])


@dataclass(frozen=True)
class Dns:
    provider: DnsProvider | None = doc(
        "Where to publish the records (absent: mailhost does not touch DNS; `mailhost dns plan` still shows them)",
        None)
    zones: list[Annotated[str, DomainName()]] = doc(
        "Zones at the provider (default: the mail domains). Each record goes to the longest zone containing it, "
        "so list e.g. example.org when the mail domains are subdomains of it", [])
    ttl: Annotated[int, Duration()] = doc("TTL of the records mailhost publishes", 3600)
    host_addresses: bool = doc("Publish A/AAAA of the host name (turn off when something else manages them)", True)
    spf: str = doc("SPF record of every domain that sets none", "v=spf1 mx -all")
    dmarc: Dmarc = doc("DMARC policy record (_dmarc)", Dmarc())
    dnssec: bool = doc("Turn on DNSSEC signing where the provider signs (Cloudflare, Route53)", True)
    adopt: list[Annotated[str, RecordKey()]] = doc(
        "Existing records not made by mailhost that it may take over, as 'NAME TYPE' (e.g. 'example.org MX'); "
        "without this a conflicting record stops the plan", [])
    owner: Annotated[str, DnsLabel()] | None = doc(
        "Ownership tag on mailhost's records, so several mail hosts can share a zone (default: from the host "
        "name)", None)
    max_change_percent: Annotated[int, Percent()] = doc(
        "Refuse a plan that updates or deletes more than this share of a zone's existing records "
        "(zones of 10+ record sets; override with --force)", 30)
    resolvers: list[Annotated[str, IPAddress(0)]] = doc(
        "Resolvers to ask for the parent's DS records (default: the system's)", [])


@dataclass(frozen=True)
class Verify:
    probe_mailbox: Annotated[str, Email()] | None = doc(
        "Mailbox that sends itself a probe message to check DKIM/SPF/DMARC of real mail; its password must be "
        "in password_env or password_file (default: the first mailbox that has one). The probe is deleted.", None)
    trust_anchor: str | None = doc(
        "File with the DNSSEC trust anchor as DS or DNSKEY records (default: the root zone's keys)", None)
    ca_bundle: str | None = doc("PEM bundle to trust for the host's certificates (default: tls.ca_bundle, "
                                "else the system's trust store)", None)
    relay_probe: Annotated[str, Email()] = doc(
        "Foreign address of a domain that receives mail, used to ask the host to relay (RCPT only: no message is "
        "ever sent). Servers refuse a recipient domain without MX before their relay rule is even reached, so "
        "it must be real.", "postmaster@gmail.com")
    cert_min_days: Annotated[int, Count(0)] = doc("Warn when a certificate expires within this many days", 14)
    rrsig_min_days: Annotated[int, Count(0)] = doc("Warn when DNSSEC signatures expire within this many days", 3)


@dataclass(frozen=True)
class Spec:
    hostname: Annotated[str, Hostname()] = doc("The mail host name (MX target, TLS certificate, HELO)")
    domains: list[Domain] = doc("Mail domains served by this host")
    mailboxes: list[Mailbox] = doc("Mailboxes (IMAP accounts)")
    addresses: Addresses = doc("Public addresses of the host", Addresses())
    aliases: list[Alias] = doc("Forwarding addresses and catch-alls", [])
    limits: Limits = doc("Sizes", Limits())
    tls: Tls = doc("Certificates", Tls())
    dkim: Dkim = doc("DKIM signing", Dkim())
    features: Features = doc("Optional services", Features())
    fail2ban: Fail2ban = doc("Brute-force protection", Fail2ban())
    firewall: Firewall = doc("nftables firewall", Firewall())
    dns: Dns = doc("DNS records: MX, A/AAAA, SPF, DKIM, DMARC, DNSSEC", Dns())
    verify: Verify = doc("Checks run from outside after the deploy (`mailhost verify`)", Verify())
    # Not a spec setting: the folder the spec file is in, which the file paths in it are relative to.
    base_dir: Path = field(default=Path("."), compare=False, metadata={"internal": True})

    # Derived views the roles use.
    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def selectors(self, domain: Domain) -> list[str]:
        return domain.dkim_selectors or self.dkim.selectors

    @property
    def dns_owner(self) -> str:
        return self.dns.owner or re.sub(r"[^a-z0-9-]", "-", self.hostname)[:63].strip("-")

    @property
    def dns_zones(self) -> list[str]:
        return self.dns.zones or self.domain_names

    def zone_of(self, name: str) -> str | None:
        """The longest of our zones that contains `name` (None: outside all of them)."""
        inside = [z for z in self.dns_zones if name == z or name.endswith("." + z)]
        return max(inside, key=len) if inside else None

    @property
    def given_addresses(self) -> list[str]:
        """The host's public addresses as the spec states them (empty: read from the host, or from DNS)."""
        return [a for a in (self.addresses.ipv4, self.addresses.ipv6) if a]

    @property
    def mail_tcp_ports(self) -> list[int]:
        """The ports the mail services listen on publicly (`mailhost.services`; 80: ACME HTTP-01)."""
        return sorted(service.port for service in services_on(self.features))

    @property
    def open_tcp_ports(self) -> list[int]:
        """Every TCP port the firewall opens: SSH, mail, and the spec's extra rules."""
        extra = [r.port for r in self.firewall.allow if r.proto == "tcp"]
        return sorted({self.firewall.ssh_port, *self.mail_tcp_ports, *extra})

    @property
    def probe_mailbox(self) -> Mailbox | None:
        """The mailbox verify logs in as: the spec's choice, else the first whose password we can read."""
        usable = [m for m in self.mailboxes if m.password_env or m.password_file]
        if self.verify.probe_mailbox:
            return next((m for m in usable if m.address == self.verify.probe_mailbox), None)
        return usable[0] if usable else None

    @property
    def acme_contact(self) -> str:
        return self.tls.contact or f"postmaster@{self.domains[0].name}"


# -- building: YAML data -> dataclasses, collecting every problem with its path ------------------------
def _path(parent: str, key: str | int) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else (f"{parent}.{key}" if parent else key)


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {str: "a string", int: "an integer", bool: "true or false"}.get(tp, str(tp))


class _Builder:
    def __init__(self):
        self.problems: list[tuple[str, str]] = []

    def build(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return None if value is None else self.build(args[0], value, path)
        if origin is Annotated:
            base, check = typing.get_args(tp)[:2]
            try:
                return check(value)
            except ValueError as exc:
                self.problems.append((path, str(exc)))
                return None
        if origin is Literal:  # of the very type: 2048.0 or true is not 2048 or 1
            if not any(type(value) is type(arg) and value == arg for arg in typing.get_args(tp)):
                self.problems.append((path, f"{_show(value)} is not {_describe(tp)}"))
            return value
        if origin is list:
            if not isinstance(value, list):
                self.problems.append((path, f"expected {_describe(tp)}, got {type(value).__name__}"))
                return []
            (item,) = typing.get_args(tp)
            return [self.build(item, v, _path(path, i)) for i, v in enumerate(value)]
        if dataclasses.is_dataclass(tp):
            return self.build_dataclass(tp, value, path)
        if tp is bool or tp is int or tp is str:
            if type(value) is not tp:
                self.problems.append((path, f"expected {_describe(tp)}, got {_show(value)}"))
            elif tp is str and not _control_free(value):
                self.problems.append((path, f"{_show(value)} holds a line break or another control character"))
            return value
        raise TypeError(f"spec field type {tp} is not supported")  # a bug in this module, not in the spec

    def build_dataclass(self, tp: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.problems.append((path, f"expected a mapping, got {type(value).__name__}"))
            return None
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                self.problems.append((_path(path, str(key)), "unknown field" +
                                      (f" (did you mean '{close[0]}'?)" if close else
                                       f"; allowed: {', '.join(fields)}")))
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = self.build(hints[name], value[name], _path(path, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.problems.append((_path(path, name), "is required"))
                kwargs[name] = None
        try:
            return tp(**kwargs)
        except TypeError:
            return None


def _cross_checks(spec: Spec) -> list[tuple[str, str]]:
    base_dir = spec.base_dir
    """Rules that span fields: domains exist, no duplicates, exactly one password source..."""
    problems = []
    domains = spec.domain_names
    for i, name in enumerate(domains):
        if name in domains[:i]:
            problems.append((f"domains[{i}].name", f"{_show(name)} is listed twice"))
    if not spec.domains:
        problems.append(("domains", "needs at least one domain"))
    if not spec.mailboxes:
        problems.append(("mailboxes", "needs at least one mailbox"))
    seen: set[str] = set()
    for i, box in enumerate(spec.mailboxes):
        path = f"mailboxes[{i}]"
        if box.address in seen:
            problems.append((f"{path}.address", f"{_show(box.address)} is listed twice"))
        seen.add(box.address)
        if box.address.split("@")[1] not in domains:
            problems.append((f"{path}.address", f"{_show(box.address)} is not in one of the mail domains "
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
                problems.append((f"{path}.password_file", f"{_show(box.password_file)} {problem}"))
    for i, alias in enumerate(spec.aliases):
        path = f"aliases[{i}]"
        if alias.source.split("@")[1] not in domains:
            problems.append((f"{path}.source", f"{_show(alias.source)} is not in one of the mail domains"))
        if alias.source in seen:
            problems.append((f"{path}.source", f"{_show(alias.source)} is also a mailbox"))
        if not alias.destinations:
            problems.append((f"{path}.destinations", "needs at least one destination"))
    sources = [a.source for a in spec.aliases]
    for i, source in enumerate(sources):
        if source in sources[:i]:
            problems.append((f"aliases[{i}].source", f"{_show(source)} is listed twice"))
    problems += _alias_loops(spec.aliases)
    problems += _twice("dkim.selectors", spec.dkim.selectors) + _twice("dns.zones", spec.dns.zones)
    for i, domain in enumerate(spec.domains):
        problems += _twice(f"domains[{i}].dkim_selectors", domain.dkim_selectors or [])
    if spec.tls.ca_bundle and (problem := _file_problem(base_dir / spec.tls.ca_bundle)):
        problems.append(("tls.ca_bundle", f"{_show(spec.tls.ca_bundle)} {problem}"))
    if spec.features.clamav:
        problems.append(("features.clamav", "virus scanning is not supported yet (its signature updates need "
                                            "the ClamAV mirrors); leave it false"))
    problems += _dns_checks(spec)
    if spec.verify.probe_mailbox and spec.probe_mailbox is None:
        problems.append(("verify.probe_mailbox", f"{_show(spec.verify.probe_mailbox)} is not a mailbox with "
                                                 "password_env or password_file (verify must log in as it)"))
    for name in ("trust_anchor", "ca_bundle"):
        value = getattr(spec.verify, name)
        if value and (problem := _file_problem(base_dir / value)):
            problems.append((f"verify.{name}", f"{_show(value)} {problem}"))
    reserved = {*ALWAYS_ON_PORTS, spec.firewall.ssh_port}
    for i, rule in enumerate(spec.firewall.allow):
        if rule.port in reserved and rule.proto == "tcp":
            problems.append((f"firewall.allow[{i}].port", f"{rule.port} is opened by mailhost already"))
    return problems


def _twice(path: str, values: list[str]) -> list[tuple[str, str]]:
    return [(f"{path}[{i}]", f"{_show(v)} is listed twice") for i, v in enumerate(values) if v in values[:i]]


def _alias_loops(aliases: list[Alias]) -> list[tuple[str, str]]:
    """Aliases that forward, through each other, back to themselves (Postfix would bounce that mail)."""
    forwards = {a.source: a.destinations for a in aliases}
    problems = []
    for i, alias in enumerate(aliases):
        if loop := _way_back(alias.source, forwards):
            problems.append((f"aliases[{i}].destinations", "forwards in a loop: " + _show(" -> ".join(loop), 200)))
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
    if not _control_free(password):
        return "holds a line break or another control character inside the password"
    return None


_PROVIDER_FIELDS = {"rfc2136": {"server", "port", "tsig_key_file"},
                    "cloudflare": {"api_token_env", "api_token_file", "endpoint"},
                    "route53": {"aws_profile", "endpoint"}}


def _dns_checks(spec: Spec) -> list[tuple[str, str]]:
    problems = []
    dns = spec.dns
    for path, spf in [("dns.spf", dns.spf)] + [(f"domains[{i}].spf", d.spf) for i, d in enumerate(spec.domains)]:
        if spf is not None and not re.fullmatch(r"v=spf1( [ -~]*)?", spf):
            problems.append((path, f"{_show(spf)} is not an SPF record (it must start with 'v=spf1' and hold "
                                   "printable ASCII only)"))
    provider = dns.provider
    if provider is None:
        return problems
    defaults = DnsProvider(kind=provider.kind)
    for name in sorted({f.name for f in dataclasses.fields(DnsProvider)} - {"kind"}):
        if name not in _PROVIDER_FIELDS[provider.kind] and getattr(provider, name) != getattr(defaults, name):
            owners = [k for k, names in _PROVIDER_FIELDS.items() if name in names]
            problems.append((f"dns.provider.{name}", f"applies to {' and '.join(owners)}, not {provider.kind}"))
    if provider.kind == "rfc2136" and not provider.server:
        problems.append(("dns.provider.server", "is required for rfc2136 (the primary that takes updates)"))
    for name in ("tsig_key_file", "api_token_file"):
        value = getattr(provider, name)
        if value and (problem := _file_problem(spec.base_dir / value)):
            problems.append((f"dns.provider.{name}", f"{_show(value)} {problem}"))
    if provider.kind == "cloudflare" and not provider.api_token_file and provider.api_token_env not in os.environ:
        problems.append(("dns.provider.api_token_env",
                         f"environment variable {provider.api_token_env} is not set (the Cloudflare API token)"))
    outside = "is outside the DNS zones ({}); add its zone to dns.zones".format(", ".join(spec.dns_zones))
    if dns.host_addresses and spec.zone_of(spec.hostname) is None:
        problems.append(("hostname", f"{_show(spec.hostname)} {outside}, or set dns.host_addresses: false"))
    for i, domain in enumerate(spec.domains):
        if spec.zone_of(domain.name) is None:
            problems.append((f"domains[{i}].name", f"{_show(domain.name)} {outside}"))
    for i, key in enumerate(dns.adopt):
        if spec.zone_of(key.split()[0].lstrip("*.")) is None:
            problems.append((f"dns.adopt[{i}]", f"{_show(key.split()[0])} {outside}"))
    return problems


def parse_spec(data: Any, source: str = "spec", base_dir: Path = Path(".")) -> Spec:
    """Validate already-loaded YAML data; raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([("", "the spec must be a YAML mapping (hostname:, domains:, mailboxes: ...)")], source)
    builder = _Builder()
    spec = builder.build_dataclass(Spec, data, "")
    if builder.problems or spec is None:
        raise SpecError(builder.problems, source)
    spec = dataclasses.replace(spec, base_dir=base_dir)
    problems = _cross_checks(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def spec_or_none(path: str) -> Spec | None:
    """The spec a command works on, or None after printing why it is invalid (the command then exits 2)."""
    try:
        return load_spec(path)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return None


class _SpecLoader(yaml.SafeLoader):
    """YAML as a spec may use it: a key given twice is an error (not "the last one wins"), and anchors and
    aliases are refused (a few hundred bytes of nested aliases expand to gigabytes: "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, f"the alias *{event.anchor[:40]}: a spec cannot use YAML "
                                       "anchors and aliases (write the value out)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.MarkedYAMLError(None, None, f"the key {_show(key)} is given twice (lines {seen[key]} "
                                           f"and {line}); keep one", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


MAX_SPEC_BYTES = 4 * 1024 ** 2  # a spec with 10,000 mailboxes is about 1 MB


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file. Relative file paths in it are relative to the file."""
    path = Path(path)
    source = _cut(str(path), 200)
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_SPEC_BYTES:
            raw = path.read_bytes()  # only a regular file is opened: a FIFO or device could hang or never end
    except OSError as exc:
        raise SpecError([("", f"cannot read {source}: {exc.strerror or exc}")], source) from None
    except ValueError:
        raise SpecError([("", "the path holds a NUL character")], source) from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError([("", "is not a regular file")], source)
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError([("", f"the file is larger than {MAX_SPEC_BYTES // 1024 ** 2} MB")], source)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError([("", "the file is UTF-16; save it as UTF-8")], source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError([("", f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8")], source) from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([("", f"not valid YAML: {where}{_cut(exc.problem or str(exc), 300)}")], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([("", "not valid YAML: " + _cut(" ".join(str(exc).split()), 300))], source) from None
    except RecursionError:
        raise SpecError([("", "the YAML is nested too deeply")], source) from None
    return parse_spec(data, source, path.parent)


# -- JSON Schema ------------------------------------------------------------------------------------
def _schema(tp: Any) -> dict:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema(args[0]), {"type": "null"}]}
    if origin is Annotated:
        return dict(typing.get_args(tp)[1].schema)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0])}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        props, required = {}, []
        for f in (f for f in dataclasses.fields(tp) if not f.metadata.get("internal")):
            prop = _schema(hints[f.name])
            prop["description"] = f.metadata.get("doc", "")
            if f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
                prop["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                if not dataclasses.is_dataclass(default):
                    prop["default"] = default
            else:
                if f.default is dataclasses.MISSING:
                    required.append(f.name)
            props[f.name] = prop
        return {"type": "object", "additionalProperties": False, "properties": props, "required": required}
    return {"type": {str: "string", int: "integer", bool: "boolean"}[tp]}


def json_schema() -> dict:
    schema = _schema(Spec)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "mailhost-spec.schema.json",
            "title": "mailhost spec", **schema}
