"""Reverse DNS: receivers reject or score down mail from an address whose PTR does not name the host
and resolve back to it (forward-confirmed reverse DNS)."""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.resolver
import dns.reversename

from ..result import Result, error, ok, timeout


def check_reverse(hostname: str, addresses: Iterable[str], res: dns.resolver.Resolver) -> Iterable[Result]:
    for address in addresses:
        subject = address
        try:
            names = [p.target.to_text(omit_final_dot=True).lower()
                     for p in res.resolve(dns.reversename.from_address(address), "PTR")]
        except dns.exception.Timeout:
            yield timeout("reverse.ptr", subject, f"PTR of {address}")
            continue
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            names = []
        fix = f"set the PTR (reverse DNS) of {address} to {hostname} in the VPS provider's panel"
        if hostname not in names:
            found = ", ".join(names) or "none"
            yield error("reverse.ptr", subject, f"PTR is {found}, not {hostname}", fix)
            continue
        rdtype = "AAAA" if ":" in address else "A"
        try:
            forward = {a.to_text() for a in res.resolve(hostname, rdtype)}
        except dns.exception.Timeout:
            yield timeout("reverse.ptr", subject, f"{hostname} {rdtype}")
            continue
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            forward = set()
        if address not in forward:
            yield error("reverse.ptr", subject, f"PTR names {hostname}, but {hostname} {rdtype} is "
                                                f"{', '.join(sorted(forward)) or 'missing'}",
                        f"publish {hostname} {rdtype} {address} (the DNS stage does, with dns.host_addresses)")
            continue
        yield ok("reverse.ptr", subject, f"PTR {hostname} resolves back to {address}")
