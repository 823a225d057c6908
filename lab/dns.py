"""Lab DNS: two real BIND 9 instances.

* `auth` (ns1.test., on the nameserver address): authoritative for the parent zone `test.`,
  every zone under it, the lab's reverse zone and a DNSBL zone. Zones are signed by
  `dnssec-policy` with inline signing and accept RFC 2136 updates signed with the lab's
  TSIG key. Each child's DS is published in `test.`, so trusting `test.`'s key validates
  the whole chain.
* `resolver` (on the gateway address): what test hosts use. It serves a local root zone
  that delegates only the lab's zones, validates from `test.`'s key (no root anchor), and
  treats every server outside the lab network as bogus, so it never queries off this
  machine; any other name gets a fast NXDOMAIN. It is also the lab's root server
  (`a.root-servers.lab.`, `root_hints`), so a host's own resolver recurses from it.

`bogus.test.` has a DS in `test.` that matches no key of it: every name under it fails
validation (`BOGUS_NAME`), as `dnssec-failed.org` does on the internet.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.tsigkeyring
import dns.update

from . import procs
from .config import LabConfig

TSIG_NAME = "mailhost-lab."
TSIG_ALGORITHM = "hmac-sha256"
DNSSEC_POLICY = """\
dnssec-policy "lab" {
    keys { csk lifetime unlimited algorithm ecdsap256sha256; };
    dnskey-ttl 60;
    max-zone-ttl 3600;
    publish-safety 5;
    retire-safety 5;
    purge-keys 1d;
    signatures-refresh 5d;
    signatures-validity 14d;
    signatures-validity-dnskey 14d;
    zone-propagation-delay 1;
    parent-ds-ttl 60;
    parent-propagation-delay 1;
};
"""
RNDC_PORT = {"auth": 9530, "resolver": 9531}
ROOT_SERVER = "a.root-servers.lab."  # the resolver instance, primary for the lab's root zone
BOGUS_ZONE = "bogus.test."
BOGUS_NAME = "www.bogus.test"
# A DS no key of BOGUS_ZONE matches (ECDSA P-256, SHA-256 of nothing in particular).
BOGUS_DS = "4242 13 2 " + "5A" * 32


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str
    file: Path

    def keyring(self) -> dict:
        return dns.tsigkeyring.from_text({self.name: (self.algorithm, self.secret)})

    def __repr__(self) -> str:  # never show the secret
        return f"TsigKey(name={self.name!r}, algorithm={self.algorithm!r}, file={str(self.file)!r})"


def zone_options(zone: str) -> str:
    """A lab zone: signed inline by BIND, updated and transferred (AXFR) with the lab's TSIG key."""
    return (f'type primary; file "zones/{zone}db"; dnssec-policy "lab"; inline-signing yes; '
            f'allow-update {{ key "{TSIG_NAME}"; }}; allow-transfer {{ key "{TSIG_NAME}"; }};')


def reverse_zones(cfg: LabConfig) -> list[str]:
    """The in-addr.arpa zone of the lab's /24 and the ip6.arpa zone of its /64."""
    v4 = ".".join(reversed(str(cfg.network.network_address).split(".")[:3])) + ".in-addr.arpa."
    nibbles = cfg.network6.network_address.exploded.replace(":", "")[:cfg.network6.prefixlen // 4]
    return [v4, ".".join(reversed(nibbles)) + ".ip6.arpa."]


def reverse_zone(cfg: LabConfig, address: str) -> str:
    """The lab reverse zone holding the PTR of `address`."""
    return reverse_zones(cfg)[ipaddress.ip_address(address).version == 6]


class LabDns:
    def __init__(self, cfg: LabConfig):
        self.cfg = cfg
        self.dir = cfg.state_dir / "dns"
        self.parent = dns.name.from_text(cfg.parent_zone)

    # -- keys -----------------------------------------------------------------
    @property
    def tsig_file(self) -> Path:
        """The TSIG key in BIND's `key` syntax (what a spec's `tsig_key_file` points at). Mode 0600."""
        return self.dir / "tsig.key"

    @property
    def tsig(self) -> TsigKey:
        path = self.tsig_file
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            path.write_text(f'key "{TSIG_NAME}" {{\n    algorithm {TSIG_ALGORITHM};\n    secret "{secret}";\n}};\n')
            path.chmod(0o600)
        text = path.read_text()
        secret = text.split('secret "', 1)[1].split('"', 1)[0]
        return TsigKey(TSIG_NAME, TSIG_ALGORITHM, secret, path)

    def _rndc_key(self) -> str:
        path = self.dir / "rndc.key"
        if not path.exists():
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            path.write_text(f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n')
            path.chmod(0o600)
        return str(path)

    def rndc(self, instance: str, *args: str) -> str:
        return procs.run(["rndc", "-s", "127.0.0.1", "-p", str(RNDC_PORT[instance]), "-k", self._rndc_key(),
                          *args]).stdout

    # -- configuration ---------------------------------------------------------
    def _common(self, instance: str, workdir: Path) -> str:
        return (f'include "{self._rndc_key()}";\n'
                f'controls {{ inet 127.0.0.1 port {RNDC_PORT[instance]} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};\n'
                f'logging {{ channel main {{ file "{workdir}/named.log" versions 2 size 20m; print-time yes; '
                f'severity info; }}; category default {{ main; }}; category lame-servers {{ null; }}; }};\n')

    def _auth_conf(self, workdir: Path) -> str:
        cfg = self.cfg
        zones = "".join(f'zone "{zone}" {{ {zone_options(zone)} }};\n'
                        for zone in (cfg.parent_zone, *reverse_zones(cfg)))
        zones += f'zone "{BOGUS_ZONE}" {{ type primary; file "zones/{BOGUS_ZONE}db"; }};\n'  # unsigned
        return (self._common("auth", workdir) + f'include "{self.tsig.file}";\n' + DNSSEC_POLICY +
                f'options {{\n    directory "{workdir}";\n    pid-file "{workdir}/named.pid";\n'
                f'    listen-on port 53 {{ {cfg.nameserver}; }};\n    listen-on-v6 {{ none; }};\n'
                f'    recursion no;\n    allow-new-zones yes;\n    notify no;\n    dnssec-validation no;\n'
                f'    key-directory "{workdir}/keys";\n    session-keyfile "{workdir}/session.key";\n'
                f'    managed-keys-directory "{workdir}";\n    empty-zones-enable no;\n}};\n' + zones)

    def _zone_file(self, zone: str, extra: str = "") -> str:
        return (f"$TTL 60\n@ SOA ns1.{self.cfg.parent_zone} hostmaster.{self.cfg.parent_zone} 1 60 30 3600 30\n"
                f"@ NS ns1.{self.cfg.parent_zone}\n{extra}")

    def _resolver_conf(self, workdir: Path, anchor: str) -> str:
        cfg = self.cfg
        return (self._common("resolver", workdir) +
                f'options {{\n    directory "{workdir}";\n    pid-file "{workdir}/named.pid";\n'
                f'    listen-on port 53 {{ {cfg.gateway}; }};\n    listen-on-v6 {{ none; }};\n'
                f'    recursion yes;\n    allow-query {{ {cfg.network}; 127.0.0.0/8; }};\n'
                f'    allow-recursion {{ {cfg.network}; 127.0.0.0/8; }};\n    dnssec-validation yes;\n'
                f'    empty-zones-enable no;\n    notify no;\n    max-cache-ttl 5;\n    max-ncache-ttl 5;\n'
                # Tests publish and query at once: no NXDOMAIN synthesised from NSEC cached before a publish.
                f'    synth-from-dnssec no;\n'
                # Pebble validates a 100-domain certificate's names at once; every one of those queries waits on
                # the same fetches (test.'s keys, cached 5 s), and past clients-per-query (10) BIND drops the
                # rest: Pebble's lookup timed out and the certificate failed. No limit here.
                f'    clients-per-query 0;\n'
                f'    managed-keys-directory "{workdir}";\n    session-keyfile "{workdir}/session.key";\n}};\n'
                # Never ask a server outside the lab: no root priming, no trust-anchor fetch.
                f'server 0.0.0.0/0 {{ bogus yes; }};\nserver ::/0 {{ bogus yes; }};\n'
                f'server {cfg.network} {{ bogus no; }};\n'
                f'trust-anchors {{ "{cfg.parent_zone}" static-key {anchor}; }};\n'
                f'zone "." {{ type primary; file "root.db"; }};\n')

    def _root_zone(self) -> str:
        cfg = self.cfg
        ns = f"ns1.{cfg.parent_zone}"
        return (f"$TTL 300\n. SOA {ns} hostmaster.{cfg.parent_zone} 1 60 30 3600 30\n. NS {ROOT_SERVER}\n"
                f"{ROOT_SERVER} A {cfg.gateway}\n"
                f"{cfg.parent_zone} NS {ns}\n" + "".join(f"{z} NS {ns}\n" for z in reverse_zones(cfg)) +
                f"{ns} A {cfg.nameserver}\n")

    @property
    def root_hints(self) -> str:
        """The lab's root server in root-hints syntax (a spec's `resolver.root_hints`)."""
        return f". 3600000 NS {ROOT_SERVER}\n{ROOT_SERVER} 3600000 A {self.cfg.gateway}\n"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> list[procs.Daemon]:
        """Start the authoritative server, then the resolver anchored on `test.`'s key."""
        cfg = self.cfg
        auth_dir, res_dir = self.dir / "auth", self.dir / "resolver"
        for d in (auth_dir / "zones", auth_dir / "keys", res_dir):
            d.mkdir(parents=True, exist_ok=True)
        (auth_dir / "zones" / f"{cfg.parent_zone}db").write_text(self._zone_file(
            cfg.parent_zone, f"ns1 A {cfg.nameserver}\n{BOGUS_ZONE} NS ns1\n{BOGUS_ZONE} DS {BOGUS_DS}\n"))
        (auth_dir / "zones" / f"{BOGUS_ZONE}db").write_text(self._zone_file(BOGUS_ZONE, "www A 198.18.0.99\n"))
        for zone in reverse_zones(cfg):
            (auth_dir / "zones" / f"{zone}db").write_text(self._zone_file(zone))
        (auth_dir / "named.conf").write_text(self._auth_conf(auth_dir))
        procs.run(["named-checkconf", str(auth_dir / "named.conf")])
        auth = procs.spawn("named-auth", ["named", "-g", "-c", str(auth_dir / "named.conf")],
                           auth_dir / "stdout.log")
        try:
            key = self.wait_signed(cfg.parent_zone)
            anchor = f"{key.flags} {key.protocol} {key.algorithm} \"{base64.b64encode(key.key).decode()}\""
            (res_dir / "root.db").write_text(self._root_zone())
            (res_dir / "named.conf").write_text(self._resolver_conf(res_dir, anchor))
            procs.run(["named-checkconf", str(res_dir / "named.conf")])
            resolver = procs.spawn("named-resolver", ["named", "-g", "-c", str(res_dir / "named.conf")],
                                   res_dir / "stdout.log")
            procs.wait_until("the lab resolver to answer", lambda: self.resolve(f"ns1.{cfg.parent_zone}", "A"),
                             timeout=20)
        except Exception:
            procs.stop("named-auth", auth)
            raise
        return [auth, resolver]

    # -- queries ---------------------------------------------------------------
    def query_auth(self, name: str, rdtype: str, dnssec: bool = True) -> dns.message.Message:
        """Ask the authoritative server directly (TCP: signed answers are large)."""
        q = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
        return dns.query.tcp(q, self.cfg.nameserver, timeout=3)

    def resolve(self, name: str, rdtype: str) -> dns.resolver.Answer:
        """Ask the lab's validating resolver, as a test host would."""
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [self.cfg.gateway]
        res.lifetime = 3
        res.use_edns(0, dns.flags.DO, 1232)
        return res.resolve(name, rdtype)

    def dnskeys(self, zone: str) -> list:
        answer = self.query_auth(zone, "DNSKEY")
        rrset = answer.find_rrset(answer.answer, dns.name.from_text(zone), dns.rdataclass.IN,
                                  dns.rdatatype.DNSKEY)
        return list(rrset)

    def wait_signed(self, zone: str, timeout: float = 20):
        """Wait until `zone` is served with a signed DNSKEY; return its key-signing key."""
        def signed():
            answer = self.query_auth(zone, "DNSKEY")
            types = {rrset.rdtype for rrset in answer.answer}
            if {dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG} <= types:
                return next(k for rrset in answer.answer if rrset.rdtype == dns.rdatatype.DNSKEY
                            for k in rrset if k.flags & 0x0001)
            return None
        return procs.wait_until(f"zone {zone} to be signed", signed, timeout=timeout, interval=0.05)

    # -- changes ---------------------------------------------------------------
    def update(self, zone: str, build) -> None:
        """Send one RFC 2136 update to `zone`; `build(update)` adds the changes."""
        upd = dns.update.Update(zone, keyring=self.tsig.keyring(), keyalgorithm=TSIG_ALGORITHM)
        build(upd)
        response = dns.query.tcp(upd, self.cfg.nameserver, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise procs.LabError(f"update of {zone} refused: {dns.rcode.to_text(response.rcode())}")

    def add_zone(self, zone: str, records: str = "") -> None:
        """Create a signed, updatable zone under `test.` and publish its NS and DS in the parent.

        `records` is zone-file text (relative names) loaded with the zone.
        """
        zone = dns.name.from_text(zone).to_text()
        if not dns.name.from_text(zone).is_subdomain(self.parent) or zone == self.cfg.parent_zone:
            raise procs.LabError(f"lab zones must be under {self.cfg.parent_zone}: {zone}")
        auth_dir = self.dir / "auth"
        (auth_dir / "zones" / f"{zone}db").write_text(self._zone_file(zone, records))
        self.rndc("auth", "addzone", zone, f"{{ {zone_options(zone)} }};")
        self.publish_ds(zone)

    def publish_ds(self, zone: str) -> None:
        """(Re)publish the delegation and the DS of `zone`'s current key in the parent."""
        zone = dns.name.from_text(zone).to_text()
        key = self.wait_signed(zone)
        ds = dns.dnssec.make_ds(zone, key, "SHA256")
        child = dns.name.from_text(zone)

        def delegate(upd: dns.update.Update) -> None:
            upd.replace(child, 60, "NS", f"ns1.{self.cfg.parent_zone}")
            upd.replace(child, 60, "DS", ds.to_text())
        self.update(self.cfg.parent_zone, delegate)

    def remove_zone(self, zone: str) -> None:
        zone = dns.name.from_text(zone).to_text()

        def undelegate(upd: dns.update.Update) -> None:
            upd.delete(dns.name.from_text(zone))
        self.update(self.cfg.parent_zone, undelegate)
        self.rndc("auth", "delzone", "-clean", zone)

    def set_ptr(self, address: str, target: str | None) -> None:
        """Set (or, with None, remove) the PTR of a lab address, as a VPS provider's panel would."""
        name = dns.name.from_text(ipaddress.ip_address(address).reverse_pointer + ".")

        def change(upd: dns.update.Update) -> None:
            if target is None:
                upd.delete(name, "PTR")
            else:
                upd.replace(name, 60, "PTR", dns.name.from_text(target).to_text())
        self.update(reverse_zone(self.cfg, address), change)

    def wait_served(self, name: str, rdtype: str, timeout: float = 10) -> None:
        procs.wait_until(f"{name} {rdtype} to be served", lambda: self.query_auth(name, rdtype).answer,
                         timeout=timeout, interval=0.05)

    @property
    def trust_anchor(self):
        """The DNSKEY RRset of `test.`: the lab's root of trust (a DNSKEY rdata list)."""
        return [k for k in self.dnskeys(self.cfg.parent_zone) if k.flags & 0x0001]

