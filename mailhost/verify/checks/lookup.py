"""How the SPF, DMARC and DNS checks ask DNS: a `Lookup` function (verify passes one backed by a resolver, tests a
dict), and the policy for a resolver that still serves values cached before the last publish."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..result import Result, Status, warn

Lookup = Callable[[str, str], list[str]]
"""(name, rdtype) -> the answers as text: TXT strings joined, without quotes; A/AAAA addresses;
MX "preference target"; PTR target names. A name without such records (NXDOMAIN or NODATA, which SPF and
DMARC treat alike) is an empty list, never an exception; no answer in time (or SERVFAIL) raises
`LookupTimeout`."""


class LookupTimeout(Exception):
    """The DNS gave no usable answer: SPF says temperror, verify says timeout (never a pass, never a fail)."""


def answer_texts(rdtype: str, rdatas: Iterable) -> list[str]:
    """dnspython rdata as a `Lookup` answers them."""
    if rdtype == "TXT":
        return [b"".join(rd.strings).decode(errors="replace") for rd in rdatas]
    if rdtype == "MX":
        return [f"{rd.preference} {rd.exchange.to_text(omit_final_dot=True)}" for rd in rdatas]
    return [rd.to_text() for rd in rdatas]


def despite_caches(judge: Callable[[Lookup], Iterable[Result]], lookup: Lookup,
                   fresh: Lookup | None) -> list[Result]:
    """Judge with what receivers see (`lookup`, through a resolver). An error there that the records on
    the authoritative servers (`fresh`) already clear comes from a resolver still serving a value cached
    before the last publish, e.g. by the deploy that just ran: a warning, since it passes once that
    value's TTL has run out. Errors the authoritative records share stay errors."""
    seen = list(judge(lookup))
    if fresh is None or not any(r.status is Status.ERROR for r in seen):
        return seen
    now: dict[tuple[str, str], list[Result]] = {}
    for r in judge(fresh):
        now.setdefault((r.check, r.subject), []).append(r)
    cleared = {key for key, results in now.items() if not any(r.status.failed for r in results)}
    return [warn(r.check, r.subject, f"{r.message}, as the resolver answers; the authoritative servers already "
                                     "serve records that pass, so the resolver still holds values cached before "
                                     "they were published", "verify again once the records' TTL has passed")
            if r.status is Status.ERROR and (r.check, r.subject) in cleared else r
            for r in seen]


