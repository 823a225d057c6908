"""Facts that several roles ask for, read once per host and run.

pyinfra reads a fact anew at every `host.get_fact`, a round trip each. Roles ask while the deploy is planned,
before any operation runs, so every such read in one run sees the same host: they can share one reading.
Not for what is read at execution time (the DNS stage reads the host again there, on purpose). One run per
process, as pyinfra's CLI runs (as `roles.dkim.key_plan` and `roles.certbot.host_tls` keep theirs)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import FactBase

_READ: dict[tuple, Any] = {}  # (host, fact, args) -> what it read


def read_once(fact: type[FactBase], **kwargs: Any) -> Any:
    """`host.get_fact(fact, **kwargs)`, read at most once per host (`kwargs` hashable)."""
    key = (host.name, fact, tuple(sorted(kwargs.items())))
    if key not in _READ:
        _READ[key] = host.get_fact(fact, **kwargs)
    return _READ[key]
