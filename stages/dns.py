"""DNS stage: publish the host's records (MX, A/AAAA, SPF, DKIM, DMARC, TLSA, CAA, TLS-RPT) through the spec's
provider.

It runs on the controller, in two steps. `publish()` comes first in the deploy: the host name must
resolve before anything on the host looks it up (package scripts do; a resolver would then cache
NXDOMAIN for the zone's negative TTL) and before certbot's HTTP-01 challenge. It publishes every
record whose value is known. `publish_keys()` comes once the DKIM role has made the keys and certbot
the certificate's key, and publishes them; on a host that has them already it does nothing at all.

The plan is made while pyinfra prepares, from the facts as they are then: conflicts, unsafe plans
and missing zones stop the deploy before the host is touched. Writes happen during execution, after
the host is read again, and are planned against the zones as read while preparing (each zone is read
once per run: `DnsSync`). A converged host makes no write, and the operations report no change.
"""

from __future__ import annotations


from pyinfra import host, logger
from pyinfra.api import FactBase, FunctionCommand, operation

from mailhost import hostinfo
from mailhost.dns.providers import DnsError
from mailhost.dns.records import HostFacts
from mailhost.dns.sync import DnsSync, ZoneState
from mailhost.spec import Spec
from roles.certbot import TlsPublicKeys
from roles._facts import read_once
from roles.dkim import DkimPublicKeys


class PublicAddresses(FactBase):
    """The host's public address per family (see `mailhost.hostinfo.PUBLIC_ADDRESSES`). Set `addresses` in
    the spec when this guess is wrong (a host behind NAT, several addresses)."""

    def command(self) -> str:
        return hostinfo.PUBLIC_ADDRESSES

    def process(self, output: list[str]) -> tuple[str, ...]:
        return hostinfo.parse_public_addresses(output)


def _facts(fresh: bool = False) -> HostFacts:
    """The host's addresses and public keys: while planning, the reading the roles share (the DKIM keys' one
    runs openssl per key: 1.5 s for 100 domains); when publishing, read anew (the roles made keys meanwhile)."""
    read = host.get_fact if fresh else read_once
    return HostFacts(addresses=read(PublicAddresses) or None, dkim_keys=read(DkimPublicKeys),
                     tls_keys=read(TlsPublicKeys))


_SYNCS: dict[str, DnsSync] = {}  # host name -> its sync, made while preparing (one run per process)


def _sync(spec: Spec) -> DnsSync:
    """The host's sync: one per run, so that its zones' readings serve every step."""
    if host.name not in _SYNCS:
        _SYNCS[host.name] = DnsSync.for_spec(spec)
    return _SYNCS[host.name]


def _show(states: list[ZoneState], sync: DnsSync) -> None:
    for state in states:
        logger.info(f"    DNS zone {state.zone.name} ({sync.provider.describe()}):")
        for line in state.plan.lines():
            logger.info(f"      {line}")


def _publish(state, host, spec: Spec, force: bool, final: bool) -> bool:
    """Execution time: read the host again, plan again, write. Only the final step insists that every
    value is known."""
    try:
        sync = _sync(spec)
        states = sync.apply(sync.plan(_facts(fresh=True)), force=force)
        for zone in states:
            for change in zone.plan.changes:
                host.log_styled(f"DNS {zone.zone.name}: {change.describe()}", log_func=logger.info)
        unknown = [p.desired for zone in states for p in zone.plan.pending]
        if final and unknown:
            names = ", ".join(f"{s.name} {s.rdtype}" for s in unknown)
            host.log_styled(f"DNS: still unknown after the host was configured: {names}", fg="red",
                            log_func=logger.error)
            return False
        if final or not unknown:
            for report in sync.signing_reports(states, spec.dns.dnssec):
                for line in report.lines():
                    host.log_styled(f"DNSSEC {line.strip()}", log_func=logger.info)
    except DnsError as exc:
        host.log_styled(f"DNS: {exc}", fg="red", log_func=logger.error)
        return False
    return True


@operation(is_idempotent=True)
def records(spec: Spec, force: bool = False, final: bool = False, write: bool = True):
    """DNS records are published; `write` comes from the plan made while preparing."""
    if not write:
        host.noop("DNS records are published")
        return
    yield FunctionCommand(_publish, (spec, force, final), {})


def publish(spec: Spec) -> bool:
    """Plan (shown, checked), then publish what is known. True when values only the host can tell
    (a fresh host's DKIM keys and certificate key) are still to come, for `publish_keys()`."""
    if spec.dns.provider is None:
        return False
    force = bool(host.data.get("dns_force"))
    try:
        sync = _sync(spec)
        states = sync.plan(_facts())
        _show(states, sync)
        sync.check(states, force)  # conflicts and unsafe plans stop the deploy here, before any change
    except DnsError as exc:
        raise SystemExit(f"DNS: {exc}") from None
    records(name="DNS records are published", spec=spec, force=force,
            write=sync.writes(states))
    return any(s.plan.pending for s in states)


def publish_keys(spec: Spec, pending: bool):
    """Publish what only the configured host can tell (new DKIM keys, the certificates' keys: TLSA), when
    something is `pending` (or a key rollover changes the TLSA set); the operation, or None."""
    if not pending or spec.dns.provider is None:
        return None
    return records(name="DNS records of the new keys (DKIM, TLSA) are published", spec=spec,
                   force=bool(host.data.get("dns_force")), final=True)
