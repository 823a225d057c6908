"""Route53 hosted zone IDs remembered between runs, so that a no-op sync costs a zone's record reads alone
(finding a zone by its name is a request of its own, and in a zone crowded with others' records the reads
around our names already take two).

A hosted zone ID names one zone for good: Route53 never reuses an ID and a zone's name never changes. So a
remembered ID is either the zone of that name or gone (NoSuchHostedZone: forgotten, the zone found by name
again). What an ID cannot tell is whether a second public zone of the same name has appeared since, which
finding by name refuses as ambiguous: a zone known from memory is therefore found by name once more before
anything is written to it. A no-op run writes nothing and needs no such check.

Kept in `$XDG_CACHE_HOME/mailhost/route53-zones.json` (~/.cache without it): one table per account, keyed
by a hash of the endpoint and the access key ID (never the key in clear). A lost or unreadable file costs one
request per zone, nothing more; a file that cannot be written is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mailhost" / "route53-zones.json"


def account_key(endpoint: str | None, access_key_id: str) -> str:
    return hashlib.sha256(f"{endpoint or 'aws'}\n{access_key_id}".encode()).hexdigest()[:16]


class ZoneIds:
    """The zone IDs an account's earlier runs found, by zone name."""

    def __init__(self, account: str):
        self.account = account
        self.path = cache_file()

    def _read(self) -> tuple[dict, dict]:
        """The whole file's table of accounts and this account's table of zones ({} for anything unreadable)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        ids = data.get(self.account)
        return data, ids if isinstance(ids, dict) else {}

    def get(self, name: str) -> str | None:
        zone_id = self._read()[1].get(name)
        return zone_id if isinstance(zone_id, str) else None

    def put(self, name: str, zone_id: str | None) -> None:
        """Remember `zone_id` for `name` (None: forget it). Read, changed and renamed into place whole, so
        two runs at once lose at most an entry (one request the next time), never the file."""
        data, ids = self._read()
        if ids.get(name) == zone_id:
            return
        if zone_id is None:
            ids.pop(name, None)
        else:
            ids[name] = zone_id
        data[self.account] = ids
        scratch = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, scratch = tempfile.mkstemp(dir=self.path.parent, suffix=".new")
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
            os.replace(scratch, self.path)
        except OSError:  # a cache: the next run finds the zone by name
            if scratch:
                Path(scratch).unlink(missing_ok=True)
