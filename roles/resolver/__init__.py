"""The host's own validating resolver: unbound on 127.0.0.1, asked by Postfix (DANE needs answers it can
trust: `options trust-ad`), postscreen's blocklist lookups (Spamhaus refuses public resolvers) and rspamd.

The host is switched to it only once it answers with validated data: `/etc/resolv.conf` is installed only
after unbound, already running with our config, answered the trust anchor's zone with the AD flag. A resolver
that fails to start or to validate leaves the host on the resolver it had, and the run fails there. The
resolv.conf the host had is kept (FALLBACK): when a later config change (a new trust anchor) leaves a switched
host's unbound unable to validate, the host goes back to it, the run fails, and a run with a config that
validates switches again. Turning `resolver.enabled` off later leaves unbound and resolv.conf as they are.
"""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from mailhost.resolver import anchor_zone, root_hints_lines, trust_anchor_lines
from mailhost.spec import Spec
from roles._config import config_file
from roles._units import unit

TRUST_ANCHOR = "/etc/unbound/mailhost-trust-anchor"
ROOT_HINTS = "/etc/unbound/mailhost-root-hints"
# Postfix's chrooted daemons (smtp, postscreen's dnsblog) read the copy in its queue directory.
RESOLV_CONF = ("/etc/resolv.conf", "/var/spool/postfix/etc/resolv.conf")
FALLBACK = "/var/lib/mailhost/resolv.conf.before"


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction):
    dns-root-data holds the root's key, dig asks unbound before the host is switched to it."""
    return ["unbound", "dns-root-data", "bind9-dnsutils"] if spec.resolver.enabled else []


def _file_lines(spec: Spec, value: str | None, parse) -> list[str] | None:
    return parse((spec.base_dir / value).read_text()) if value else None


def anchor_zone_of(spec: Spec) -> str:
    path = spec.resolver.trust_anchor
    return anchor_zone((spec.base_dir / path).read_text()) if path else "."


def answers_validated(spec: Spec, consequence: str, undo: str = "") -> StringCommand:
    """unbound answers the trust anchor's zone (the root by default) with the AD flag: it runs and validates.
    If not, the command says so and what follows (`consequence`), runs `undo` (shell text of ours, no spec
    values) and fails."""
    zone = anchor_zone_of(spec)
    return StringCommand(
        "out=$(dig @127.0.0.1 +dnssec +time=2 +tries=3", QuoteString(zone), "SOA) &&",
        "echo \"$out\" | grep -q 'status: NOERROR' && echo \"$out\" | grep -Eq '^;; flags:[a-z ]* ad[ ;]' ||",
        f"{{ echo 'unbound does not answer with validated data: {consequence}' >&2;",
        "echo \"$out\" | head -n 8 >&2;", f"{undo} exit 1; }}")


def keep_fallback() -> str:
    """Keep the host's resolv.conf of before the switch (once; not one of ours)."""
    return (f"{{ [ -e {FALLBACK} ] || grep -qs '^# Managed by mailhost' /etc/resolv.conf || "
            f"cp -L /etc/resolv.conf {FALLBACK}; }} &&")


def back_to_fallback() -> str:
    """Put the kept resolv.conf back in both places (nothing kept: nothing to go back to)."""
    return f"[ ! -e {FALLBACK} ] || {{ " + " && ".join(f"cp {FALLBACK} {path}" for path in RESOLV_CONF) + "; };"


@deploy("resolver")
def apply(spec: Spec) -> None:
    if not spec.resolver.enabled:
        return
    anchor = _file_lines(spec, spec.resolver.trust_anchor, trust_anchor_lines)
    hints = _file_lines(spec, spec.resolver.root_hints, root_hints_lines)
    changed = []
    if anchor:
        changed.append(config_file(__file__, TRUST_ANCHOR, rows=anchor))
    if hints:
        changed.append(config_file(__file__, ROOT_HINTS, rows=hints))
    changed.append(config_file(__file__, "/etc/unbound/unbound.conf", check="unbound-checkconf {path}",
                               trust_anchor=TRUST_ANCHOR if anchor else None, root_hints=ROOT_HINTS if hints else None,
                               anchor_zone=anchor_zone_of(spec)))
    unit(name="unbound restarts for new config", service="unbound.service", restarted=True,
         _if=any_changed(*changed))  # only if running; a stopped unbound starts below
    unit(name="unbound is running", service="unbound.service", running=True, enabled=True)
    # A switched host must not be left asking an unbound that no longer validates (a wrong new trust anchor).
    server.shell(name="unbound validates with its new config", _if=any_changed(*changed), commands=[
        answers_validated(spec, "the host goes back to the resolver it had", back_to_fallback())])
    for path in RESOLV_CONF:
        config_file(__file__, path, check=StringCommand(
            keep_fallback(), answers_validated(spec, "the host stays on its resolver")))
