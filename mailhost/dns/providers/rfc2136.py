"""RFC 2136 dynamic updates (BIND, Knot, PowerDNS): read by AXFR, write one TSIG-signed UPDATE per zone.

Every RRset the update replaces carries a prerequisite: "exactly these records" for a set that was
there when we read the zone, "no such set" for one that was not. A change made by someone else
between plan and apply makes the server refuse the whole message (NXRRSET/YXRRSET), so it is
detected, not overwritten. Ownership lives in `_mailhost` TXT markers (see base.py).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr

from mailhost.spec import DnsProvider

from ..plan import Change, Record
from ..records import canonical
from ..signing import ds_of_keys
from .base import (UNMANAGED_TYPES, ConcurrentChange, DnsError, Provider, Signing, WriteUncertain, Zone,
                   ZoneNotFound, assign_owners, marker_changes)

TIMEOUT = 10.0
SERVE_TIMEOUT = 30.0
_KEY = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)


def read_tsig_file(path: Path) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a key file in BIND syntax, as `tsig-keygen` writes it."""
    text = path.read_text()
    m = _KEY.search(text)
    body = m[2] if m else ""
    algorithm = re.search(r"algorithm\s+([\w.-]+)\s*;", body)
    secret = re.search(r'secret\s+"([^"]+)"\s*;', body)
    if not (m and algorithm and secret):
        raise DnsError(f"dns.provider.tsig_key_file: {path} is not a BIND key file "
                       f'(key "name" {{ algorithm hmac-sha256; secret "..."; }};)')
    return m[1], algorithm[1], secret[1]


class Rfc2136Provider(Provider):
    kind = "rfc2136"
    parallel_zones = 8  # one TCP connection each; name servers serve many at once

    def __init__(self, config: DnsProvider, owner: str, base_dir: Path = Path(".")):
        super().__init__(config, owner, base_dir)
        self.port = config.port
        try:
            self.address = socket.getaddrinfo(config.server, config.port, proto=socket.IPPROTO_TCP)[0][4][0]
        except OSError as exc:
            raise DnsError(f"dns.provider.server: cannot resolve {config.server!r} ({exc.strerror})") from None
        self.keyring: dict | None = None
        self.keyname: dns.name.Name | None = None
        if config.tsig_key_file:
            name, algorithm, secret = read_tsig_file(base_dir / config.tsig_key_file)
            try:
                self.keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
            except (ValueError, dns.exception.DNSException):
                raise DnsError(f"dns.provider.tsig_key_file: the key in {config.tsig_key_file} is not valid "
                               f"(algorithm {algorithm}?)") from None
            self.keyname = dns.name.from_text(name)

    def describe(self) -> str:
        return f"rfc2136 {self.config.server}:{self.port}"

    def _query(self, message: dns.message.Message, write: bool = False) -> dns.message.Message:
        self.requests.count(write)
        return dns.query.tcp(message, self.address, port=self.port, timeout=TIMEOUT)

    def zone(self, name: str) -> Zone:
        query = dns.message.make_query(name + ".", "SOA")
        try:
            response = self._query(query)
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsError(f"{self.describe()}: no answer for zone {name} ({exc})") from None
        soa = response.get_rrset(response.answer, dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.SOA)
        if response.rcode() != dns.rcode.NOERROR or soa is None:
            raise ZoneNotFound(f"zone {name!r} is not served by {self.describe()} "
                               f"({dns.rcode.to_text(response.rcode())})")
        return Zone(name, name)

    def records(self, zone: Zone, wanted: Collection[tuple[str, str]] | None = None) -> list[Record]:
        self.requests.count(write=False)
        try:
            raw = self._transfer(zone)
        except dns.tsig.PeerError as exc:
            raise DnsError(f"zone {zone.name}: {self.describe()} rejected the TSIG key ({exc}); "
                           f"check dns.provider.tsig_key_file") from None
        except dns.xfr.TransferError as exc:
            raise DnsError(f"zone {zone.name}: {self.describe()} refused the zone transfer "
                           f"({dns.rcode.to_text(exc.rcode)}); allow AXFR for the TSIG key") from None
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsError(f"zone {zone.name}: zone transfer from {self.describe()} failed ({exc})") from None
        return assign_owners(raw)

    def _transfer(self, zone: Zone) -> list[Record]:
        """The zone's records by AXFR, as they come (dnspython checks the transfer opens and closes with the
        zone's SOA). A signed zone's RRSIG/NSEC records, three in four of a small zone's, are dropped before
        they are made canonical: a 100-zone no-op spent half its DNS time on them."""
        raw, soa_seen = [], False
        for message in dns.query.xfr(self.address, zone.name + ".", port=self.port, keyring=self.keyring,
                                     keyname=self.keyname, lifetime=TIMEOUT, relativize=False):
            for rrset in message.answer:
                rdtype = dns.rdatatype.to_text(rrset.rdtype)
                if rdtype in UNMANAGED_TYPES or (rdtype == "SOA" and soa_seen):  # the closing SOA repeats the first
                    continue
                soa_seen |= rdtype == "SOA"
                name = rrset.name.to_text(omit_final_dot=True).lower()
                raw += [Record(name, rdtype, rrset.ttl, canonical(rd)) for rd in rrset]
        return raw

    def apply(self, zone: Zone, changes: Sequence[Change]) -> None:
        update = dns.update.Update(zone.name + ".", keyring=self.keyring, keyname=self.keyname)
        for change in changes:
            name = dns.name.from_text(change.name)
            before, after = change.rrset_before(), change.rrset_after()
            if before:  # "exactly these records" (RFC 2136 2.4.2: value dependent, TTL ignored)
                update.present(name, dns.rdataset.from_rdata_list(0, list(before)))
            else:
                update.absent(name, change.rdtype)
            update.delete(name, change.rdtype)
            if after:
                update.add(name, change.ttl, *after)
            marker, value = marker_changes(change, self.owner)
            update.delete(dns.name.from_text(marker), "TXT")
            if value is not None:
                update.add(dns.name.from_text(marker), change.ttl, value)
        try:
            response = self._query(update, write=True)
        except dns.tsig.PeerError as exc:
            raise DnsError(f"zone {zone.name}: {self.describe()} rejected the TSIG key ({exc}); "
                           f"check dns.provider.tsig_key_file") from None
        except (OSError, dns.exception.Timeout) as exc:
            raise WriteUncertain(f"no answer to the update of {zone.name} ({exc})") from None
        rcode = response.rcode()
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
            raise ConcurrentChange(f"zone {zone.name} changed since it was read "
                                   f"({dns.rcode.to_text(rcode)}); nothing was written, plan again")
        if rcode == dns.rcode.SERVFAIL:
            raise WriteUncertain(f"the update of {zone.name} failed on the server (SERVFAIL)")
        if rcode != dns.rcode.NOERROR:
            hint = ("; check the TSIG key and the zone's update policy (BIND also refuses an MX or SRV whose "
                    "target in the zone has no A/AAAA record)") if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) else ""
            raise DnsError(f"{self.describe()} refused the update of {zone.name} "
                           f"({dns.rcode.to_text(rcode)}){hint}")
        self._wait_served(zone, changes)

    def _wait_served(self, zone: Zone, changes: Sequence[Change]) -> None:
        """Wait until the server answers with the new data. A signing server (BIND inline-signing) publishes
        an update a moment later; a resolver asking before (an ACME CA checking the new A record) would
        cache the old answer, or NXDOMAIN, for the negative TTL."""
        waiting = list(changes)
        deadline = time.monotonic() + SERVE_TIMEOUT
        while waiting:
            change = waiting[0]
            response = self._query(dns.message.make_query(change.name + ".", change.rdtype))
            found = response.get_rrset(response.answer, dns.name.from_text(change.name), dns.rdataclass.IN,
                                       dns.rdatatype.from_text(change.rdtype))
            if {canonical(rd) for rd in found or ()} == change.rrset_after():
                waiting.pop(0)
            elif time.monotonic() > deadline:
                raise DnsError(f"zone {zone.name}: the update was accepted but {change.name} {change.rdtype} "
                               f"is still not served after {SERVE_TIMEOUT:.0f}s")
            else:
                time.sleep(0.1)

    def signing(self, zone: Zone, enable: bool) -> Signing:
        query = dns.message.make_query(zone.name + ".", "DNSKEY", want_dnssec=True)
        try:
            response = self._query(query)
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsError(f"zone {zone.name}: cannot read DNSKEY from {self.describe()} ({exc})") from None
        keys = response.get_rrset(response.answer, dns.name.from_text(zone.name + "."), dns.rdataclass.IN,
                                  dns.rdatatype.DNSKEY)
        if not keys:
            return Signing(zone.name, False, "unsigned",
                           note="signing is the server's job: turn it on there (BIND: dnssec-policy, inline-signing)")
        return Signing(zone.name, True, "signed by the server", ds_of_keys(zone.name, keys))


PROVIDER = Rfc2136Provider
