"""The spec's model: frozen pydantic models, each field with its type (a check from `values` in `Annotated`), its
default and its documentation. pydantic walks the YAML data into it (strictly: no coercion, unknown keys are
errors) and publishes its JSON Schema; `load` words its errors for people."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_core import PydanticUndefined

from ..services import services_on
from .values import (AliasSource, Count, DnsLabel, DomainName, Duration, Email, EnvName, Hostname, HttpsUrl,
                     IPAddress, Network, OneOf, PasswordHash, Percent, Port, RecordKey, Size, Text, Url)


def doc(text: str, default: Any = PydanticUndefined) -> Any:
    """A field with its documentation (shown in the JSON Schema)."""
    return Field(default=default, description=text)  # (pydantic copies a mutable default for each instance)


# Addresses every mail domain must receive (RFC 5321 4.5.1, RFC 2142).
ROLE_ADDRESSES = ("postmaster", "abuse")

# ACME directory hosts -> their CA's CAA identity (what a CAA "issue" record names).
KNOWN_CAA_ISSUERS = {"api.letsencrypt.org": "letsencrypt.org", "pki.goog": "pki.goog", "zerossl.com": "sectigo.com",
                     "buypass.com": "buypass.com", "ssl.com": "ssl.com"}

# A string nothing more specific checks (a file name, an SPF record, a profile name): no control characters.
PlainText = Annotated[str, Text()]


class Model(BaseModel):
    """Every part of the spec: immutable, strictly typed (2048.0 is not 2048, "yes" not true), no unknown keys."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)



class Addresses(Model):
    ipv4: Annotated[str, IPAddress(4)] | None = doc("Public IPv4 address of the host (discovered when absent)", None)
    ipv6: Annotated[str, IPAddress(6)] | None = doc("Public IPv6 address of the host (discovered when absent)", None)


class Domain(Model):
    name: Annotated[str, DomainName()] = doc("A mail domain, e.g. example.org")
    dkim_selectors: list[Annotated[str, DnsLabel()]] | None = doc(
        "RSA DKIM selectors for this domain (default: dkim.selectors)", None)
    dkim_ed25519_selectors: list[Annotated[str, DnsLabel()]] | None = doc(
        "Ed25519 DKIM selectors for this domain (default: dkim.ed25519_selectors; [] signs with RSA only)", None)
    spf: PlainText | None = doc("SPF record of this domain (default: dns.spf)", None)
    dmarc: Dmarc | None = doc("This domain's own DMARC settings: any field it leaves out comes from dns.dmarc", None)


class Mailbox(Model):
    address: Annotated[str, Email()] = doc("The mailbox address; its domain must be one of `domains`")
    password_hash: Annotated[str, PasswordHash()] | None = doc(
        "Password hash ({ARGON2ID}..., {SHA512-CRYPT}...), e.g. from `doveadm pw -s ARGON2ID`", None)
    password_env: Annotated[str, EnvName()] | None = doc(
        "Name of an environment variable holding the password (read on the controller, hashed before upload)",
        None)
    password_file: PlainText | None = doc("Path of a file holding the password (on the controller)", None)
    quota: Annotated[int, Size()] | None = doc("Mailbox quota, e.g. 2G (default: limits.default_quota)", None)


class Alias(Model):
    source: Annotated[str, AliasSource()] = doc("Address to forward, or @domain for a catch-all")
    destinations: list[Annotated[str, Email()]] = doc("Where it goes: our mailboxes or external addresses")


class Limits(Model):
    message_size: Annotated[int, Size()] = doc("Largest message accepted", 25 * 1024 ** 2)
    default_quota: Annotated[int, Size()] = doc("Quota of a mailbox that sets none", 1024 ** 3)


class Tls(Model):
    acme_directory: Annotated[str, HttpsUrl()] = doc(
        "ACME directory URL", "https://acme-v02.api.letsencrypt.org/directory")
    ca_bundle: PlainText | None = doc(
        "PEM file (on the controller) of a private CA to trust for the ACME server and its certificates", None)
    contact: Annotated[str, Email()] | None = doc("ACME account contact (default: postmaster@first domain)", None)
    key_generation: Annotated[int, Count(1)] = doc(
        "Raise it to replace the mail certificate's key: the standby key, published in TLSA all along, takes over "
        "once its record has been served for dns.ttl, and the slot it left gets a new key (a run that is too early "
        "waits and says until when; the next run finishes)", 1)
    caa_issuer: Annotated[str, DomainName()] | None = doc(
        "The CA's CAA identity, published as the only one that may issue for the host name (default: known from "
        "acme_directory for Let's Encrypt, Google, ZeroSSL, Buypass and SSL.com; none published for another CA "
        "unless set)", None)


class Dkim(Model):
    selectors: list[Annotated[str, DnsLabel()]] = doc("RSA selectors to sign with, for every domain", ["mail"])
    ed25519_selectors: list[Annotated[str, DnsLabel()]] = doc(
        "Ed25519 selectors (RFC 8463) to sign with beside RSA, for every domain: a receiver that knows Ed25519 "
        "checks the shorter, stronger key; one that does not ignores that signature and checks the RSA one",
        ["ed25519"])
    key_bits: Annotated[int, OneOf(1024, 2048, 3072, 4096)] = doc("RSA key size of new keys", 2048)
    retention: Annotated[int, Duration()] = doc(
        "How long a key the spec no longer names stays published after it stopped signing (mail signed just "
        "before still verifies where it arrives late), before its record is withdrawn and the host deletes it. "
        "Renaming a selector rotates: the new key signs once its record has been out for dns.ttl", 7 * 86400)


class Forwarding(Model):
    srs: bool = doc(
        "Rewrite the envelope sender of mail forwarded to outside addresses (SRS, Debian's postsrsd), so SPF "
        "passes at the receiver, and send bounces to that address back to the original sender. Active when an "
        "alias forwards outside or users may write sieve redirects (features.managesieve); it then also shows in "
        "the Return-Path of mail from outside delivered here", True)
    srs_domain: Annotated[str, DomainName()] | None = doc(
        "The domain of rewritten senders, one of `domains` (its SPF must authorise the host; default: the first)",
        None)


class Features(Model):
    pop3: bool = doc("Offer POP3 (995)", False)
    managesieve: bool = doc("Offer ManageSieve (4190)", False)
    clamav: bool = doc("Virus scanning with ClamAV (needs ~1.5 GB RAM)", False)
    postscreen: bool = doc("Screen port 25 clients with postscreen", True)
    rspamd_controller: bool = doc(
        "Run rspamd's controller on 127.0.0.1:11334 (web UI through an SSH tunnel, `rspamc learn_*`); "
        "about 20 MB of memory (spam_learning runs it too)", False)
    spam_learning: bool = doc(
        "Users teach the spam filter: a message moved into Junk over IMAP trains rspamd's Bayes classifier as "
        "spam, one moved out of Junk (not to Trash) as ham (Dovecot IMAPSieve and rspamc, through rspamd's "
        "controller on 127.0.0.1)", True)
    dnsbl: list[Annotated[str, DomainName()]] = doc(
        "DNS blocklists postscreen consults", ["zen.spamhaus.org"])
    mta_sts: Annotated[str, OneOf("enforce", "testing", "none", "off")] = doc(
        "MTA-STS (RFC 8461) for every domain: senders that support it send only over TLS with our certificate "
        "(enforce), or only report failures (testing). The policy is served over HTTPS (nginx, 443) at "
        "mta-sts.<domain>. To stop, serve `none` for a week (the policy's max_age: senders drop the policy they "
        "cached) before `off` removes it (RFC 8461 8.3).", "enforce")
    mta_sts_outbound: bool = doc(
        "Honour receivers' MTA-STS policies when sending (Debian's postfix-mta-sts-resolver: a domain with an "
        "enforced policy gets mail only over TLS to a matching, valid certificate; it runs only while Postfix asks, "
        "started by its socket, ending a minute after the last question)", True)
    autoconfig: bool = doc(
        "Mail client autoconfiguration: SRV records (RFC 6186, RFC 8314) and autoconfig.<domain> over HTTPS", True)

    @property
    def controller(self) -> bool:
        """Whether rspamd's controller runs: asked for, or spam learning needs it."""
        return self.rspamd_controller or self.spam_learning

    @property
    def web(self) -> bool:
        """Whether nginx serves anything on 443 (the MTA-STS policy, the autoconfig file)."""
        return self.mta_sts != "off" or self.autoconfig


class Fail2ban(Model):
    enabled: bool = doc("Ban sources of repeated failed logins", True)
    bantime: Annotated[int, Duration()] = doc("How long a ban lasts", 3600)
    findtime: Annotated[int, Duration()] = doc("Window in which failures are counted", 600)
    maxretry: Annotated[int, Count(1)] = doc("Failures within findtime that trigger a ban", 5)
    ignore: list[Annotated[str, Network()]] = doc("Addresses/networks never banned", [])


class FirewallRule(Model):
    port: Annotated[int, Port()] = doc("Port to open")
    proto: Annotated[str, OneOf("tcp", "udp")] = doc("Protocol", "tcp")
    sources: list[Annotated[str, Network()]] = doc("Allowed sources (empty: everyone)", [])


class Firewall(Model):
    ssh_port: Annotated[int, Port()] = doc("SSH port (always kept open, so the operator is never locked out)", 22)
    ssh_sources: list[Annotated[str, Network()]] = doc("Restrict SSH to these sources (empty: everyone)", [])
    allow: list[FirewallRule] = doc("Extra ports to open", [])


class Rfc2136(Model):
    kind: Literal["rfc2136"] = doc("An authoritative server taking RFC 2136 dynamic updates")
    server: PlainText = doc("Primary nameserver that takes updates (address or name)")
    port: Annotated[int, Port()] = doc("Its port", 53)
    tsig_key_file: PlainText | None = doc(
        "File with the TSIG key in BIND syntax (key \"name\" { algorithm ...; secret ...; };)", None)


class Cloudflare(Model):
    kind: Literal["cloudflare"] = doc("Cloudflare's DNS API")
    api_token_env: Annotated[str, EnvName()] = doc(
        "Environment variable holding the API token (Zone.DNS edit, Zone.DNSSEC edit)", "CLOUDFLARE_API_TOKEN")
    api_token_file: PlainText | None = doc("File holding the API token instead (on the controller)", None)
    endpoint: Annotated[str, Url()] | None = doc("API base URL instead of the public one (tests, API proxies)", None)


class Route53(Model):
    kind: Literal["route53"] = doc("Amazon Route 53")
    aws_profile: PlainText | None = doc("AWS profile (default: the standard AWS credential chain)", None)
    endpoint: Annotated[str, Url()] | None = doc("API base URL instead of the public one (tests, API proxies)", None)


# One model per provider, told apart by `kind`.
DnsProvider = Annotated[Union[Cloudflare, Route53, Rfc2136], Field(discriminator="kind")]


DmarcPolicy = Annotated[str, OneOf("none", "quarantine", "reject")]
Alignment = Annotated[str, OneOf("relaxed", "strict")]


class Dmarc(Model):
    policy: DmarcPolicy = doc("What receivers do with mail that fails DMARC", "quarantine")
    subdomain_policy: DmarcPolicy | None = doc("Policy for subdomains (default: the same as policy)", None)
    rua: list[Annotated[str, Email()]] = doc(
        "Where aggregate reports go (default: postmaster@ the domain, which mailhost routes to a mailbox when the "
        "spec does not)", [])
    dkim_alignment: Alignment = doc(
        "DKIM alignment (adkim): strict needs the signing domain to be the From domain itself, relaxed also "
        "accepts its organizational domain", "relaxed")
    spf_alignment: Alignment = doc("SPF alignment (aspf), as dkim_alignment for the envelope sender's domain",
                                   "relaxed")

    def merged(self, own: Dmarc | None) -> Dmarc:
        """These settings with those a domain set itself (only the fields it gave) taking precedence."""
        return self.model_copy(update={field: getattr(own, field) for field in own.model_fields_set}) if own else self


class Dns(Model):
    provider: DnsProvider | None = doc(
        "Where to publish the records (absent: mailhost does not touch DNS; `mailhost dns plan` still shows them)",
        None)
    zones: list[Annotated[str, DomainName()]] = doc(
        "Zones at the provider (default: the mail domains, except those under another mail domain, which go in "
        "its zone). Each record goes to the longest zone containing it, so list e.g. example.org when the mail "
        "domains are subdomains of it, or lists.example.org when that is a zone of its own", [])
    ttl: Annotated[int, Duration()] = doc("TTL of the records mailhost publishes", 3600)
    host_addresses: bool = doc("Publish A/AAAA of the host name (turn off when something else manages them)", True)
    spf: PlainText = doc("SPF record of every domain that sets none", "v=spf1 mx -all")
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
    tls_reports: list[Annotated[str, Email()]] = doc(
        "Where senders send TLS reports (TLS-RPT, _smtp._tls; default: where DMARC reports go)", [])
    resolvers: list[Annotated[str, IPAddress(0)]] = doc(
        "Resolvers to ask for the parent's DS records (default: the system's)", [])


class Resolver(Model):
    enabled: bool = doc(
        "Run a validating DNS resolver (unbound) on the host for Postfix (outbound DANE), postscreen's blocklists "
        "and rspamd. Blocklists such as Spamhaus refuse queries that come through public resolvers.", True)
    trust_anchor: PlainText | None = doc(
        "File (on the controller) with the DNSSEC trust anchor as DS or DNSKEY records, for a private DNS tree "
        "(default: the root zone's key, kept current by unbound)", None)
    root_hints: PlainText | None = doc(
        "File (on the controller) with the root servers as NS and A/AAAA records, for a private DNS tree "
        "(default: unbound's built-in list)", None)


class Verify(Model):
    probe_mailbox: Annotated[str, Email()] | None = doc(
        "Mailbox that sends itself a probe message to check DKIM/SPF/DMARC of real mail; its password must be "
        "in password_env or password_file (default: the first mailbox that has one). The probe is deleted.", None)
    trust_anchor: PlainText | None = doc(
        "File with the DNSSEC trust anchor as DS or DNSKEY records (default: resolver.trust_anchor, else the root "
        "zone's keys)", None)
    bogus_name: Annotated[str, DomainName()] = doc(
        "A name whose DNSSEC signatures are broken on purpose: the host's resolver must refuse it",
        "dnssec-failed.org")
    ca_bundle: PlainText | None = doc("PEM bundle to trust for the host's certificates (default: tls.ca_bundle, "
                                "else the system's trust store)", None)
    relay_probe: Annotated[str, Email()] = doc(
        "Foreign address of a domain that receives mail, used to ask the host to relay (RCPT only: no message is "
        "ever sent). Servers refuse a recipient domain without MX before their relay rule is even reached, so "
        "it must be real.", "postmaster@gmail.com")
    cert_min_days: Annotated[int, Count(0)] = doc("Warn when a certificate expires within this many days", 14)
    rrsig_min_days: Annotated[int, Count(0)] = doc("Warn when DNSSEC signatures expire within this many days", 3)


class Spec(Model):
    hostname: Annotated[str, Hostname()] = doc("The mail host name (MX target, TLS certificate, HELO)")
    domains: list[Domain] = doc("Mail domains served by this host")
    mailboxes: list[Mailbox] = doc("Mailboxes (IMAP accounts)")
    addresses: Addresses = doc("Public addresses of the host", Addresses())
    aliases: list[Alias] = doc("Forwarding addresses and catch-alls", [])
    limits: Limits = doc("Sizes", Limits())
    tls: Tls = doc("Certificates", Tls())
    dkim: Dkim = doc("DKIM signing", Dkim())
    forwarding: Forwarding = doc("Mail forwarded to outside addresses", Forwarding())
    features: Features = doc("Optional services", Features())
    fail2ban: Fail2ban = doc("Brute-force protection", Fail2ban())
    firewall: Firewall = doc("nftables firewall", Firewall())
    dns: Dns = doc("DNS records: MX, A/AAAA, SPF, DKIM, DMARC, DNSSEC", Dns())
    resolver: Resolver = doc("The host's own validating DNS resolver", Resolver())
    verify: Verify = doc("Checks run from outside after the deploy (`mailhost verify`)", Verify())
    # Not a spec setting: the folder the spec file is in, which the file paths in it are relative to.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    # Derived views the roles use.
    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def selectors(self, domain: Domain) -> list[str]:
        """The domain's RSA selectors."""
        return self.dkim.selectors if domain.dkim_selectors is None else domain.dkim_selectors

    def ed25519_selectors(self, domain: Domain) -> list[str]:
        return self.dkim.ed25519_selectors if domain.dkim_ed25519_selectors is None else domain.dkim_ed25519_selectors

    def dkim_keys(self, domain: Domain) -> list[tuple[str, str]]:
        """(selector, algorithm) of every key the domain signs with: "rsa" or "ed25519"."""
        return ([(s, "rsa") for s in self.selectors(domain)]
                + [(s, "ed25519") for s in self.ed25519_selectors(domain)])

    @property
    def forwards_outside(self) -> bool:
        """Whether mail may leave for another domain than ours on a user's behalf: an alias to an outside
        address, or a sieve redirect a user may write (ManageSieve)."""
        ours = set(self.domain_names)
        return self.features.managesieve or any(d.rsplit("@", 1)[1] not in ours
                                                for a in self.aliases for d in a.destinations)

    @property
    def srs_domain(self) -> str | None:
        """The SRS domain when SRS is active, else None."""
        if not (self.forwarding.srs and self.forwards_outside):
            return None
        return self.forwarding.srs_domain or self.domain_names[0]

    def dmarc_of(self, domain: Domain) -> Dmarc:
        """The domain's DMARC settings: its own, the rest from dns.dmarc."""
        return self.dns.dmarc.merged(domain.dmarc)

    @property
    def dns_owner(self) -> str:
        return self.dns.owner or re.sub(r"[^a-z0-9-]", "-", self.hostname)[:63].strip("-")

    @cached_property  # asked for every record's zone: computed once (the spec is frozen)
    def dns_zones(self) -> list[str]:
        """The spec's zones, else the mail domains but those under another one (lists.example.org beside
        example.org is a name in example.org's zone, as it is at most providers)."""
        names = self.domain_names
        return self.dns.zones or [n for n in names if not any(n.endswith("." + other) for other in names)]

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
    def role_aliases(self) -> dict[str, str]:
        """postmaster@ (RFC 5321) and abuse@ (RFC 2142) of every domain whose spec routes neither them nor a
        catch-all: to the domain's first mailbox, else the first mailbox."""
        taken = {m.address for m in self.mailboxes} | {a.source for a in self.aliases}
        routes = {}
        for domain in self.domain_names:
            same = [m.address for m in self.mailboxes if m.address.endswith("@" + domain)]
            owner = (same or [m.address for m in self.mailboxes])[:1]
            if f"@{domain}" in taken or not owner:
                continue
            routes.update({f"{local}@{domain}": owner[0] for local in ROLE_ADDRESSES
                           if f"{local}@{domain}" not in taken})
        return routes

    @property
    def probe_mailbox(self) -> Mailbox | None:
        """The mailbox verify logs in as: the spec's choice, else the first whose password we can read."""
        usable = [m for m in self.mailboxes if m.password_env or m.password_file]
        if self.verify.probe_mailbox:
            return next((m for m in usable if m.address == self.verify.probe_mailbox), None)
        return usable[0] if usable else None

    @property
    def certificate_slots(self) -> tuple[str, str]:
        """The two certificates of the host name, each with a key of its own (`mailhost.rollover`)."""
        return self.hostname, f"{self.hostname}-b"

    @property
    def caa_issuer(self) -> str | None:
        """The ACME CA's CAA identity: the spec's, else the one its directory's host is known for."""
        if self.tls.caa_issuer:
            return self.tls.caa_issuer
        host = urlsplit(self.tls.acme_directory).hostname or ""
        return next((issuer for suffix, issuer in KNOWN_CAA_ISSUERS.items()
                     if host == suffix or host.endswith("." + suffix)), None)

    @property
    def acme_contact(self) -> str:
        return self.tls.contact or f"postmaster@{self.domains[0].name}"

