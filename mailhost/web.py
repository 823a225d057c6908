"""What the host serves over HTTPS (nginx, port 443), for senders and mail clients of every domain: the
MTA-STS policy (RFC 8461) at https://mta-sts.<domain>/.well-known/mta-sts.txt and the Thunderbird-style
autoconfig file at https://autoconfig.<domain>/mail/config-v1.1.xml, and the names and certificates they are
served under. The DNS records, the nginx role and verify all read this one description.

Both files are the same for every domain (one mail host), so they are written once. Their names are CNAMEs
of the host name, and go into certificates of their own (`web_certificates`): the mail certificate keeps
the host name alone, so its key (the TLSA record) never depends on the list of domains.
"""

from __future__ import annotations

import hashlib
from xml.sax.saxutils import escape

from mailhost.spec import Spec

POLICY_PATH = "/.well-known/mta-sts.txt"
AUTOCONFIG_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
POLICY_MAX_AGE = 7 * 86400  # RFC 8461 suggests weeks; a week lets a mode change reach senders within days
NAMES_PER_CERTIFICATE = 100  # Let's Encrypt's limit


def policy(spec: Spec) -> str:
    """The MTA-STS policy: our MX, the spec's mode (RFC 8461 3.2; lines end with CRLF)."""
    lines = ["version: STSv1", f"mode: {spec.features.mta_sts}", f"mx: {spec.hostname}",
             f"max_age: {POLICY_MAX_AGE}"]
    return "".join(line + "\r\n" for line in lines)


def policy_id(text: str) -> str:
    """The `id` of the `_mta-sts` record: a digest of the policy, so it changes exactly when the policy does
    (senders fetch the policy again only when the id changes)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def web_names(spec: Spec) -> list[str]:
    """Every name served over HTTPS besides the host name: mta-sts.<domain>, autoconfig.<domain>."""
    prefixes = (["mta-sts"] if spec.features.mta_sts != "off" else []) + \
        (["autoconfig"] if spec.features.autoconfig else [])
    return [f"{prefix}.{domain}" for domain in spec.domain_names for prefix in prefixes]


def web_certificates(spec: Spec) -> dict[str, list[str]]:
    """{certificate name: its names}: the web names, at most 100 to a certificate (certbot lineages)."""
    names = web_names(spec)
    chunks = [names[i:i + NAMES_PER_CERTIFICATE] for i in range(0, len(names), NAMES_PER_CERTIFICATE)]
    return {f"{spec.hostname}-web-{n}": chunk for n, chunk in enumerate(chunks, 1)}


def autoconfig(spec: Spec) -> str:
    """Thunderbird's autoconfig file (also read by K-9/Thunderbird for Android, Evolution, KMail): IMAP over
    implicit TLS and submission over implicit TLS (RFC 8314), the address as the user name."""
    host = escape(spec.hostname)
    domains = "".join(f"    <domain>{escape(d)}</domain>\n" for d in spec.domain_names)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<clientConfig version="1.1">\n'
        f'  <emailProvider id="{host}">\n{domains}'
        f"    <displayName>{host}</displayName>\n"
        f"    <displayShortName>{host}</displayShortName>\n"
        '    <incomingServer type="imap">\n'
        f"      <hostname>{host}</hostname>\n      <port>993</port>\n      <socketType>SSL</socketType>\n"
        "      <username>%EMAILADDRESS%</username>\n      <authentication>password-cleartext</authentication>\n"
        "    </incomingServer>\n"
        '    <outgoingServer type="smtp">\n'
        f"      <hostname>{host}</hostname>\n      <port>465</port>\n      <socketType>SSL</socketType>\n"
        "      <username>%EMAILADDRESS%</username>\n      <authentication>password-cleartext</authentication>\n"
        "    </outgoingServer>\n"
        "  </emailProvider>\n"
        "</clientConfig>\n")


def srv_records(spec: Spec) -> dict[str, str]:
    """RFC 6186 and RFC 8314 SRV records of a domain, by service label: where each client protocol is, implicit
    TLS preferred (a lower priority), and "0 0 0 ." for what the host does not offer."""
    host = f"{spec.hostname}."
    off = "0 0 0 ."
    return {
        "_submissions._tcp": f"0 1 465 {host}",
        "_submission._tcp": f"10 1 587 {host}",
        "_imaps._tcp": f"0 1 993 {host}",
        "_imap._tcp": f"10 1 143 {host}",
        "_pop3s._tcp": f"0 1 995 {host}" if spec.features.pop3 else off,
        "_pop3._tcp": off,
    }
