"""TLS-RPT (RFC 8460): `_smtp._tls.<domain>` says where senders report failed TLS (DANE, MTA-STS)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..result import Result, error, ok, timeout
from .lookup import Lookup, LookupTimeout

CHECK = "dns.tlsrpt"
URI = re.compile(r"mailto:[^,;!\s@]+@[^,;!\s@]+|https://[^,;!\s]+")
EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")


def rua_of(record: str) -> str | None:
    """RFC 8460 3: `v=TLSRPTv1`, then `;`-separated fields (spaces allowed around `;`): one `rua=` with
    comma-separated mailto: or https: URIs, and extension fields. The rua value, None when malformed."""
    fields = [f.strip() for f in record.split(";")]
    if fields[-1] == "":
        fields.pop()
    if fields[:1] != ["v=TLSRPTv1"]:
        return None
    rua = [f[4:] for f in fields[1:] if f.startswith("rua=")]
    others = [f for f in fields[1:] if not f.startswith("rua=")]
    if len(rua) != 1 or not all(EXTENSION.fullmatch(f) for f in others):
        return None
    uris = [u.strip() for u in rua[0].split(",")]
    return rua[0] if uris and all(URI.fullmatch(u) for u in uris) else None


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
    elif not (found := rua_of(records[0])):
        yield error(CHECK, domain, f"the TLS-RPT record is malformed: {records[0][:120]!r}",
                    "v=TLSRPTv1; rua=mailto:address (RFC 8460)")
    else:
        yield ok(CHECK, domain, f"TLS reports go to {found}")
