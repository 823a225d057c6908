"""`mailhost verify`: check a deployment the way the internet sees it, plus what only the host knows.

Read-only: it asks DNS, opens TLS and SMTP connections (never sending mail to anyone but the probe
mailbox, whose probe it deletes), and reads the host over SSH. Running it twice gives the same report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import dns.exception
import dns.resolver

from mailhost import dkim_keys, dnssec, hostinfo
from mailhost.dns.records import HostFacts
from mailhost.spec import Spec

from .checks import dns as dns_checks
from .checks import dnssec as dnssec_checks
from .checks import host as host_checks
from .checks.caa import check_caa
from .checks.dane import check_tlsa, served_certificate
from .checks.dmarc import check_dmarc
from .checks.mta_sts import check_autoconfig, check_mta_sts
from .checks.tlsrpt import check_tlsrpt
from .checks.lookup import LookupTimeout, answer_texts, despite_caches
from .checks.spf import check_spf
from .checks.reverse import check_reverse
from .report import Report
from .result import Result, Status, error, ok, warn
from .sessions import SessionFailure

# (name, rdtype) probed for DNSSEC besides the apex: what receivers ask about.
DNSSEC_PROBES = ("MX", "TXT")


@dataclass
class Target:
    """What verify looks at: the spec, how to reach the host's shell (None: on-host checks are reported as
    not done), and which resolvers to ask."""
    spec: Spec
    run: host_checks.Run | None = None

    @property
    def base_dir(self) -> Path:
        """Where the spec's files are."""
        return self.spec.base_dir

    @property
    def resolvers(self) -> Sequence[str]:
        return self.spec.dns.resolvers

    @property
    def ca_file(self) -> str | None:
        bundle = self.spec.verify.ca_bundle or self.spec.tls.ca_bundle
        return str(self.base_dir / bundle) if bundle else None

    @property
    def anchor(self) -> dnssec.Anchor:
        path = self.spec.verify.trust_anchor or self.spec.resolver.trust_anchor
        return dnssec.Anchor.from_text((self.base_dir / path).read_text()) if path else dnssec.ROOT


def lookup_with(res: dns.resolver.Resolver):
    """A `Lookup` over a resolver: answers as text, [] for NXDOMAIN/NODATA, LookupTimeout otherwise."""
    def lookup(name: str, rdtype: str) -> list[str]:
        try:
            answer = res.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise LookupTimeout(f"{name} {rdtype}: {exc.__class__.__name__}") from None
        return answer_texts(rdtype, answer)
    return lookup


def host_addresses(target: Target, res: dns.resolver.Resolver) -> list[str]:
    """The spec's addresses, else the host name's A/AAAA as the world resolves them."""
    if target.spec.given_addresses:
        return target.spec.given_addresses
    found = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [rd.to_text() for rd in res.resolve(target.spec.hostname, rdtype)]
        except dns.exception.DNSException:
            pass
    return found


def _host_access(target: Target) -> Result:
    hostname = target.spec.hostname
    if target.run is None:
        return warn("host.access", hostname, "on-host checks skipped (no shell on the host)",
                    "give verify SSH access (--ssh), or run it as the last stage of deploy.py")
    try:
        target.run("true")
    except OSError as exc:
        return error("host.access", hostname, f"on-host checks not done: {exc}", "check SSH access (--ssh)")
    return ok("host.access", hostname, "on-host checks run through a shell on the host")


Job = Callable[[], Iterable[Result]]
# Checks at once: each mostly waits on the network (a handshake, a mail delivery, an SSH round trip) or for its
# turn (below), and with room for all of them none waits for a thread: the slowest (the probe) starts at once.
WORKERS = 64
# ... but the host's own services see at most this many of our connections at a time (the probe and the first
# greetings aside, which mostly wait in postscreen's greet pause, before any smtpd is spawned for them): a small
# host (a 1-vCPU VPS, an emulated one) spawns smtpd and makes TLS handshakes in a core-second or more each, and
# a burst of thirty timed out checks that pass one by one (four still timed out one greeting under emulation).
# Verify should measure the host, not the load it puts on it.
HOST_CONNECTIONS = 2


def limited(jobs: Sequence[Job], at_once: int) -> list[Job]:
    """The jobs, of which at most `at_once` run at the same time (whatever the pool's size)."""
    gate = threading.BoundedSemaphore(at_once)

    def gated(job: Job) -> Job:
        def run() -> list[Result]:
            with gate:
                return list(job())
        return run
    return [gated(job) for job in jobs]


def run_jobs(jobs: Sequence[Job], workers: int = WORKERS) -> Iterator[Result]:
    """Independent checks, run at once; their results in the jobs' order, so the report reads the same on every
    run. A check's own timeouts stay as they are: running beside others turns none into a pass."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(lambda job=job: list(job())) for job in jobs]
        for future in futures:
            yield from future.result()


def run_checks(target: Target) -> Iterable[Result]:
    spec = target.spec
    res = dns_checks.resolver(target.resolvers)
    lookup = lookup_with(res)
    fresh = dns_checks.authoritative_lookup(spec, res, lookup)
    addresses = host_addresses(target, res)
    if not addresses:
        yield error("dns.address", spec.hostname, f"{spec.hostname} has no A/AAAA record",
                    "publish it (the DNS stage does, with dns.host_addresses) or set addresses in the spec")
        return
    access = _host_access(target)
    yield access
    shell = target.run if access.status is Status.OK else None
    keys = tls_keys = host_dkim = None
    if shell:  # three round trips at once
        with ThreadPoolExecutor(max_workers=3) as pool:
            dkim_lines, tls_lines, host_dkim_lines = pool.map(lambda command: shell(command).splitlines(), [
                hostinfo.DKIM_PUBLIC_KEYS, hostinfo.TLS_PUBLIC_KEYS, dkim_keys.HOST_DKIM_COMMAND])
        keys = hostinfo.parse_dkim_public_keys(dkim_lines)
        tls_keys = hostinfo.parse_tls_public_keys(tls_lines)
        host_dkim = dkim_keys.HostKeys.parse(host_dkim_lines)
    facts = HostFacts(tuple(addresses), keys, tls_keys)
    jobs: list[Job] = [lambda: dns_checks.check_records(spec, facts, target.resolvers)]
    for domain, policy in ((d.name, spec.dmarc_of(d).policy) for d in spec.domains):
        jobs += [lambda d=domain: despite_caches(lambda lk: check_spf(d, addresses, lk), lookup, fresh),
                 lambda d=domain: despite_caches(lambda lk: check_tlsrpt(d, lk), lookup, fresh),
                 lambda d=domain, p=policy: despite_caches(lambda lk: check_dmarc(d, lk, spec.domain_names, p),
                                                           lookup, fresh)]
    query = dnssec.tcp_query(res.nameservers[0])
    for zone in spec.dns_zones:
        probes = [(d, rdtype) for d in spec.domain_names if spec.zone_of(d) == zone for rdtype in DNSSEC_PROBES]
        jobs.append(lambda z=zone, p=probes: dnssec_checks.check_zone(z, query, target.anchor, target.resolvers,
                                                                      spec.verify.rrsig_min_days, p))
    jobs.append(lambda: check_reverse(spec.hostname, addresses, res))
    jobs += _service_checks(target, addresses, lookup, fresh, query, host_dkim)
    if shell:
        jobs += [on_host(spec.hostname, job) for job in (
                 lambda: host_checks.check_services(shell, spec), lambda: host_checks.check_resolver(shell, spec),
                 lambda: host_checks.check_fail2ban(shell, spec), lambda: host_checks.check_key_files(shell, spec),
                 lambda: host_checks.check_open_ports(shell, spec, addresses[0]),
                 lambda: host_checks.check_dkim_rotation(spec, host_dkim), lambda: host_checks.check_srs(shell, spec),
                 lambda: host_checks.check_spam_learning(shell, spec),
                 lambda: host_checks.check_mta_sts_resolver(shell, spec))]
    yield from run_jobs(jobs)


def on_host(hostname: str, job: Job) -> Job:
    """An on-host check whose shell is lost midway reports what it found and that it could not finish,
    instead of taking the whole report down with it."""
    def run() -> list[Result]:
        results: list[Result] = []
        try:
            for result in job():
                results.append(result)
        except OSError as exc:
            results.append(error("host.access", hostname, f"an on-host check not finished: {exc}",
                                 "check SSH access to the host and run verify again"))
        return results
    return run


def _service_checks(target: Target, addresses: list[str], lookup, fresh, query,
                    host_dkim: dkim_keys.HostKeys | None) -> list[Job]:
    """The certificate, the greeting and DANE on every address of the host (IPv4 and IPv6: a sender may pick
    either, and another machine may answer on one); TLS versions (a service's setting, two handshakes more per
    port), CAA against the served certificate's CA and SMTP policy on the first; DNSBLs; the probe message.

    postscreen holds a client it has not seen before in its greet pause (3 s on our hosts, 6 s by Postfix's
    default) on every connection it opens until one has passed; one greeting per address goes first, and the
    other port-25 checks wait for it."""
    from .checks import smtp, tls
    from .checks.probe import check_probe
    spec, address = target.spec, addresses[0]
    greeted = [threading.Event() for _ in addresses]
    on_25: list[Job] = []  # wait for the greetings
    jobs: list[Job] = []
    for each in addresses:
        for endpoint in tls.endpoints(spec.features):
            (on_25 if endpoint.port == 25 else jobs).append(lambda each=each, endpoint=endpoint: [
                _on(result, each, addresses) for result in tls.check_tls(
                    each, endpoint.port, endpoint.mode, spec.hostname, target.ca_file, spec.verify.cert_min_days,
                    versions=each == address)])
    on_25 += [lambda: check_tlsa(spec.hostname, addresses, target.anchor, query),
              lambda: _check_caa(spec, address, lookup, fresh)]
    for domain in spec.domain_names:
        # These read records too (the MTA-STS id, the SRV records): judged again past the resolver's cache.
        if spec.features.mta_sts != "off":
            jobs.append(lambda d=domain: despite_caches(
                lambda lk: check_mta_sts(d, spec.hostname, spec.features.mta_sts, address, lk, target.ca_file),
                lookup, fresh))
        if spec.features.autoconfig:
            jobs.append(lambda d=domain: despite_caches(
                lambda lk: check_autoconfig(d, spec.hostname, address, lk, target.ca_file), lookup, fresh))
    on_25 += [lambda: smtp.check_vrfy_expn(address, spec.hostname),
              lambda: smtp.check_role_addresses(address, spec.hostname, spec.domain_names),
              lambda: smtp.check_open_relay(address, spec.hostname, target.ca_file,
                                            foreign_rcpt=spec.verify.relay_probe),
              lambda: smtp.check_auth_before_tls(address, spec.hostname, 25)]
    jobs.append(lambda: smtp.check_auth_before_tls(address, spec.hostname, 587))
    jobs += [lambda port=port: smtp.check_submission_requires_auth(address, spec.hostname, target.ca_file, port,
                                                                   foreign_rcpt=spec.verify.relay_probe)
             for port in (587, 465)]
    if spec.features.dnsbl:
        jobs.append(lambda: smtp.check_dnsbl(addresses, spec.features.dnsbl, lookup))

    def greeting(each: str, done: threading.Event) -> list[Result]:
        try:
            return [_on(result, each, addresses) for result in smtp.check_banner(each, spec.hostname)]
        finally:
            done.set()

    def greetings_done() -> None:
        for done in greeted:
            done.wait()

    def after_greetings(job: Job) -> Job:
        def run() -> Iterable[Result]:
            greetings_done()
            return job()
        return run
    # The probe (a submission, then IMAP polling until it arrives) waits most and starts first, beside the
    # greetings; the rest share the host's connections, those on port 25 once postscreen has let us in.
    gated = limited([*jobs, *on_25], HOST_CONNECTIONS)
    return [lambda: check_probe(target, address, lookup, fresh, host_dkim, greetings_done),
            *(lambda each=each, done=done: greeting(each, done) for each, done in zip(addresses, greeted)),
            *gated[:len(jobs)], *map(after_greetings, gated[len(jobs):])]


def _check_caa(spec: Spec, address: str, lookup, fresh) -> list[Result]:
    """CAA, judged also against the CA of the certificate port 25 serves."""
    try:
        served = served_certificate(address, spec.hostname)
    except SessionFailure:
        served = None  # the TLS check of port 25 says why
    return despite_caches(lambda lk: check_caa(spec.hostname, spec.caa_issuer, lk, served), lookup, fresh)


def _on(result: Result, address: str, addresses: list[str]) -> Result:
    """A result of one of several addresses names it (one address: as it was)."""
    return replace(result, subject=f"{result.subject} ({address})") if len(addresses) > 1 else result


def verify(target: Target) -> Report:
    return Report(list(run_checks(target)), groups=[*target.spec.domain_names, target.spec.hostname])
