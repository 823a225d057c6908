"""Reading a Route53 zone around the names mailhost manages, instead of listing it whole.

ListResourceRecordSets has no filter, only a place to start (StartRecordName) and pages of at most 300
sets in Route53's order: names with their labels reversed (`org.example.mail.`), then types. So the
names we manage are read as a few ranges, one request each, wherever they sit among others' records.

What a range covers is decided by comparing names in that order. AWS documents it with a trailing dot
(`mail-old` sorts before `mail`: '-' < '.'); moto, which the tests run against, compares without it. A
name counts as covered only where both orders agree, so a misjudged order costs a request more, never a
record unseen.

Records we own at names no longer wanted (an old host name, a rotated-out DKIM selector, a feature
turned off) are found through an index kept in the zone: `_mailhost.<zone>` TXT, one value per owner,
`mailhost-names; owner=<tag>; TYPE:name ...` (names relative to the zone, `@` the apex). It is written
with the changes (in the last request of a sync, so a name leaves it only once its records are gone).
A zone without our index (first sync, or set up before it existed) is listed whole once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .base import MARKER_PREFIX

INDEX_WORD = "mailhost-names"
INDEX_VALUE_CHARS = 3000  # Route53 takes TXT values of up to 4,000 characters; an owner's list spans several


def index_name(zone: str) -> str:
    return f"{MARKER_PREFIX}.{zone}"


def _aws_order(name: str) -> str:
    return ".".join(reversed(name.split("."))) + "."


def _moto_order(name: str) -> str:
    return ".".join(reversed(name.split(".")))


ORDERS = (_aws_order, _moto_order)


def in_order(names: Iterable[str]) -> list[str]:
    """`names` in the order ranges are read (Route53's documented order)."""
    return sorted(set(names), key=_aws_order)


def covers(start: str, end: str | None, name: str) -> bool:
    """Did a listing from `start` up to (not including) `end` (None: to the zone's end) show every set at `name`?"""
    return all(order(start) <= order(name) and (end is None or order(name) < order(end)) for order in ORDERS)


def _relative(name: str, zone: str) -> str:
    return "@" if name == zone else name[:-len(zone) - 1]


def _absolute(rel: str, zone: str) -> str:
    return zone if rel == "@" else f"{rel}.{zone}"


def index_values(zone: str, owner: str, keys: Collection[tuple[str, str]]) -> list[str]:
    """The index values (TXT texts) listing `keys` (name, type) for `owner`; none when it owns nothing."""
    head = f"{INDEX_WORD}; owner={owner};"
    values, words = [], []
    for name, rdtype in sorted(keys, key=lambda k: (_aws_order(k[0]), k[1])):
        word = f"{rdtype}:{_relative(name, zone)}"
        if words and len(head) + sum(len(w) + 1 for w in words) + len(word) + 1 > INDEX_VALUE_CHARS:
            values.append(" ".join([head, *words]))
            words = []
        words.append(word)
    if words:
        values.append(" ".join([head, *words]))
    return values


def parse_index(zone: str, owner: str, texts: Iterable[str]) -> set[tuple[str, str]] | None:
    """The (name, type) keys the index gives `owner`; None when no value of the index is its own."""
    keys: set[tuple[str, str]] | None = None
    for text in texts:
        head, _, rest = text.partition(" ")
        fields = rest.split(" ")
        if head != f"{INDEX_WORD};" or not fields or fields[0] != f"owner={owner};":
            continue
        keys = keys or set()
        for word in fields[1:]:
            rdtype, colon, rel = word.partition(":")
            if colon and rdtype.isalnum() and rel:
                keys.add((_absolute(rel.lower(), zone), rdtype.upper()))
    return keys
