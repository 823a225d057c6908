"""DNS providers, one module each, one interface (`base.Provider`)."""

from __future__ import annotations

import importlib
from pathlib import Path

from mailhost.spec import DnsProvider

from .base import ConcurrentChange, DnsError, Provider, Signing, WriteUncertain, Zone, ZoneNotFound

MODULES = {"cloudflare": "cloudflare", "route53": "route53", "rfc2136": "rfc2136"}


def make_provider(config: DnsProvider, owner: str, base_dir: Path = Path(".")) -> Provider:
    """The provider the spec names, with its credentials loaded (DnsError when one is missing)."""
    if config.kind not in MODULES:
        raise DnsError(f"dns.provider.kind: unknown provider {config.kind!r} (known: {', '.join(MODULES)})")
    module = importlib.import_module(f"{__name__}.{MODULES[config.kind]}")  # SDKs load only when used
    return module.PROVIDER(config, owner, base_dir)


__all__ = ["make_provider", "Provider", "DnsError", "ZoneNotFound", "ConcurrentChange", "WriteUncertain",
           "Signing", "Zone"]
