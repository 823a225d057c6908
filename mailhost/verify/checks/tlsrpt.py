"""TLS-RPT (RFC 8460): `_smtp._tls.<domain>` says where senders report failed TLS (DANE, MTA-STS)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..result import Result, error, ok, timeout
from .lookup import Lookup, LookupTimeout

CHECK = "dns.tlsrpt"
# RFC 8460 3: "v=TLSRPTv1;" then rua= one or more mailto: or https: URIs, comma-separated.
RECORD = re.compile(r"v=TLSRPTv1;\s*rua=((?:mailto:[^,;!\s]+@[^,;!\s]+|https://[^,;!\s]+)"
                    r"(?:\s*,\s*(?:mailto:[^,;!\s]+@[^,;!\s]+|https://[^,;!\s]+))*)\s*;?\s*")


def check_tlsrpt(domain: str, lookup: Lookup) -> Iterable[Result]:
    name = f"_smtp._tls.{domain}"
    try:
        records = [t for t in lookup(name, "TXT") if t.startswith("v=TLSRPTv1")]
    except LookupTimeout as exc:
        yield timeout(CHECK, domain, f"{name} TXT ({exc})")
        return
    if not records:
        yield error(CHECK, domain, f"no TLS-RPT record at {name}: senders cannot report TLS failures",
                    f"publish {name}. IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@{domain}\" (the deploy does)")
    elif len(records) > 1:
        yield error(CHECK, domain, f"{len(records)} TLS-RPT records at {name}: senders ignore them all",
                    "keep one")
    elif not (found := RECORD.fullmatch(records[0])):
        yield error(CHECK, domain, f"the TLS-RPT record is malformed: {records[0][:120]!r}",
                    "v=TLSRPTv1; rua=mailto:address (RFC 8460)")
    else:
        yield ok(CHECK, domain, f"TLS reports go to {found.group(1)}")
