"""The mail deployment spec: one YAML file -> a validated, typed `Spec`.

The pydantic models of `model` are the single source of truth: `load_spec()` validates against them (every
error names its field path, unknown keys are errors), and `json_schema()` publishes them for editors.
Validation needs no network and touches no host. The spec is the validation boundary: every value that
reaches a shell, a config file, a map or a DNS record is checked here (`values`, `rules`).
"""

from .load import load_spec, parse_spec, spec_or_none
from .model import (Addresses, Alias, Cloudflare, Dkim, Dmarc, Dns, DnsProvider, Domain, Fail2ban, Features, Firewall,
                    FirewallRule, Limits, Mailbox, Rfc2136, Route53, Spec, Tls, Verify)
from .schema import json_schema
from .values import SpecError

__all__ = ["Addresses", "Alias", "Cloudflare", "Dkim", "Dmarc", "Dns", "DnsProvider", "Domain", "Fail2ban", "Features",
           "Firewall", "FirewallRule", "Limits", "Mailbox", "Rfc2136", "Route53", "Spec", "SpecError", "Tls", "Verify",
           "json_schema",
           "load_spec", "parse_spec", "spec_or_none"]
