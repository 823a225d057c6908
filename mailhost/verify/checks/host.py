"""What only the host knows: services running, firewall, Fail2Ban jails, key files, renewal timer.

The host is reached through a `Run` function (a shell command -> its output), so the same checks run
over plain SSH (`mailhost verify`) and inside a pyinfra deploy.
"""

from __future__ import annotations

import re
import shlex
import socket
import time
from collections.abc import Callable, Iterable

from mailhost import dkim_keys, hostinfo
from mailhost.services import JAILS, services_on
from mailhost.spec import Spec
from mailhost.spec.values import shown

from ..result import Result, error, ok, warn

Run = Callable[[str], str]
SERVICES = ["postfix", "dovecot", "rspamd", "redis-server", "fail2ban", "nftables"]


def check_services(run: Run, spec: Spec) -> Iterable[Result]:
    hostname = spec.hostname
    services = SERVICES + (["unbound"] if spec.resolver.enabled else []) + (["nginx"] if spec.features.web else []) \
        + ([hostinfo.MTA_STS_SOCKET] if spec.features.mta_sts_outbound else []) \
        + (["postsrsd"] if spec.srs_domain else [])
    states = dict(zip(services, run("systemctl is-active " + " ".join(services) + " || true").split()))
    down = [s for s in services if states.get(s) != "active"]
    if down:
        yield error("host.services", hostname, "not running: " + ", ".join(f"{s} ({states.get(s, '?')})" for s in down),
                    "run the deploy again (it starts them); `journalctl -u <service>` on the host says why")
    else:
        yield ok("host.services", hostname, f"all {len(services)} services active")
    timer = run("systemctl is-enabled certbot.timer 2>/dev/null; systemctl is-active certbot.timer 2>/dev/null; true")
    if timer.split() != ["enabled", "active"]:
        yield error("host.renewal", hostname, "the certificate renewal timer (certbot.timer) is not enabled and active",
                    "run the deploy again")
    else:
        yield ok("host.renewal", hostname, "certificate renewal timer active")


def _dig_status(output: str) -> str | None:
    """The rcode of a `dig` answer (NOERROR, SERVFAIL, ...), None when no answer came."""
    found = re.search(r"status: ([A-Z]+)", output)
    return found.group(1) if found else None


def check_resolver(run: Run, spec: Spec) -> Iterable[Result]:
    """The host's own resolver answers, refuses a name whose DNSSEC is broken, and is the one the host uses."""
    if not spec.resolver.enabled:
        return
    dig = "dig @127.0.0.1 +dnssec +time=2 +tries=2"
    good, bogus = (run(f"{dig} {shlex.quote(name)} A 2>&1 || true") for name in (spec.hostname, spec.verify.bogus_name))
    used = [line.split()[1] for line in run("cat /etc/resolv.conf 2>/dev/null || true").splitlines()
            if line.startswith("nameserver") and len(line.split()) > 1]
    where = f"{spec.hostname} (unbound)"
    if _dig_status(good) != "NOERROR":
        yield error("host.resolver", where, f"does not answer for {spec.hostname} "
                    f"({_dig_status(good) or 'no answer'})",
                    "`systemctl status unbound` and `unbound-control status` on the host; run the deploy again")
    elif _dig_status(bogus) != "SERVFAIL":
        yield error("host.resolver", where, f"does not validate: {spec.verify.bogus_name}, whose DNSSEC is broken, "
                    f"was answered ({_dig_status(bogus) or 'no answer'}, not SERVFAIL)",
                    "check resolver.trust_anchor; run the deploy again")
    elif used[:1] != ["127.0.0.1"]:
        yield error("host.resolver", where, f"the host does not use it: /etc/resolv.conf names "
                    f"{', '.join(used) or 'no nameserver'}", "run the deploy again (something rewrote resolv.conf: "
                    "a DHCP client or systemd-resolved)")
    else:
        yield ok("host.resolver", where, f"validating resolver in use (answers {spec.hostname}, refuses "
                 f"{spec.verify.bogus_name})")


def check_fail2ban(run: Run, spec: Spec) -> Iterable[Result]:
    if not spec.fail2ban.enabled:
        return
    out = run("fail2ban-client status 2>&1 || true")
    line = next((ln for ln in out.splitlines() if "Jail list:" in ln), "")
    jails = {j.strip() for j in line.split(":", 1)[-1].split(",") if j.strip()}
    missing = set(JAILS) - jails
    if missing:
        yield error("host.fail2ban", spec.hostname, f"jails not loaded: {', '.join(sorted(missing))}",
                    "run the deploy again; `fail2ban-client -t` on the host shows config errors")
    else:
        yield ok("host.fail2ban", spec.hostname, f"jails loaded: {', '.join(sorted(jails))}")


def check_key_files(run: Run, spec: Spec) -> Iterable[Result]:
    """Every key the spec signs with is on the host, readable by rspamd alone (a key others can read is a key
    others can sign with)."""
    owner = hostinfo.DKIM_KEY_OWNER
    paths = [hostinfo.dkim_key_path(d.name, s, a) for d in spec.domains for s, a in spec.dkim_keys(d)]
    found = {line.rsplit(" ", 1)[1]: line.rsplit(" ", 1)[0] for line in
             run(f"stat -c '%a %U %n' {hostinfo.DKIM_KEY_DIR}/*/* 2>/dev/null || true").splitlines()
             if line.count(" ") >= 2}
    missing = [p for p in paths if p not in found]
    wrong = [f"{p} ({found[p]})" for p in paths if p in found and found[p] != f"600 {owner}"]
    if missing or wrong:
        yield error("host.keys", spec.hostname, "DKIM private keys "
                    + "; ".join(filter(None, [missing and "missing: " + ", ".join(missing),
                                              wrong and f"not mode 600, owner {owner}: " + ", ".join(wrong)])),
                    f"run the deploy again (it makes missing keys, mode 600, owner {owner})")
    else:
        yield ok("host.keys", spec.hostname, f"{len(paths)} DKIM private key(s), mode 600, owner {owner}")


def check_open_ports(run: Run, spec: Spec, address: str, timeout: float = 3.0) -> Iterable[Result]:
    """Every port listening on a public address and reachable from here must be one the spec declares."""
    declared = set(spec.open_tcp_ports)
    listening = set()
    for line in run("ss -Hltn").splitlines():
        local = line.split()[3] if len(line.split()) > 3 else ""
        host, _, port = local.rpartition(":")
        if port.isdigit() and not host.startswith(("127.", "[::1]", "[::ffff:127.")):
            listening.add(int(port))
    exposed = []
    for port in sorted(listening - declared):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                exposed.append(port)
        except OSError:
            pass  # filtered by the firewall, as it should be
    if exposed:
        yield error("host.firewall", spec.hostname, f"reachable but not declared: tcp {', '.join(map(str, exposed))}",
                    "run the deploy again (it restores the firewall), or declare the port in firewall.allow")
    else:
        closed = sorted(listening - declared)
        yield ok("host.firewall", spec.hostname, "only declared ports are reachable"
                 + (f" (listening but filtered: {', '.join(map(str, closed))})" if closed else ""))
    unreachable = []
    for port in sorted(declared & {service.port for service in services_on(spec.features) if service.tls}):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                pass
        except OSError:
            unreachable.append(port)
    if unreachable:
        yield warn("host.firewall", f"{spec.hostname}:{','.join(map(str, unreachable))}",
                   f"declared but not reachable from here: tcp {', '.join(map(str, unreachable))}",
                   "check the firewall and the provider's network filters")


def check_dkim_rotation(spec: Spec, host_dkim: dkim_keys.HostKeys, now: float | None = None) -> Iterable[Result]:
    """Where the DKIM keys stand against the spec: a rotation the next deploy would take a step in (switch to the
    new key, withdraw an old one) is due; one that waits for dns.ttl or keeps an old key published is fine."""
    plan = dkim_keys.decide(spec, host_dkim, time.time() if now is None else now, lambda key: True)
    signing = sorted(host_dkim.signing)
    due = [f"sign with {', '.join(dkim_keys.named(k) for k in plan.sign)}"] if set(plan.sign) != set(signing) else []
    due += [f"withdraw {dkim_keys.named(k)} (dkim.retention over)" for k in plan.remove]
    if due:
        yield warn("host.dkim-rotation", spec.hostname, "a DKIM rotation is due: " + "; ".join(due),
                   "run the deploy again (it takes the next step)")
    elif any(note for note in plan.notes):
        yield ok("host.dkim-rotation", spec.hostname, "; ".join(n.removeprefix("DKIM rotation: ") for n in plan.notes))
    else:
        yield ok("host.dkim-rotation", spec.hostname,
                 "rspamd signs with the spec's keys: " + ", ".join(dkim_keys.named(k) for k in signing))


def check_srs(run: Run, spec: Spec) -> Iterable[Result]:
    """SRS answers as Postfix asks it: an outside sender becomes an address of the SRS domain, and that
    address turns back into the sender (what a bounce to forwarded mail needs)."""
    if not spec.srs_domain:
        return
    sender = "verify-probe@srs-check.invalid"
    forward = run(f"postmap -q {shlex.quote(sender)} {hostinfo.SRS_FORWARD_TABLE} 2>&1 || true").strip()
    back = run(f"postmap -q {shlex.quote(forward)} {hostinfo.SRS_REVERSE_TABLE} 2>&1 || true").strip() \
        if forward.startswith("SRS0") else ""
    if forward.lower().endswith("@" + spec.srs_domain) and back == sender:
        yield ok("host.srs", spec.hostname, f"forwarded mail's senders become {forward.split('@')[0][:12]}...@"
                                            f"{spec.srs_domain}, and bounces find the sender again")
    else:
        said = lambda text: shown(text, 120) if text else "nothing"  # noqa: E731
        yield error("host.srs", spec.hostname, f"postsrsd rewrote {sender} to {said(forward)}"
                    + (f" and back to {said(back)}" if forward.startswith("SRS0") else ""),
                    "check `systemctl status postsrsd` and /etc/default/postsrsd; run the deploy again")


def check_mta_sts_resolver(run: Run, spec: Spec, seconds: int = 30) -> Iterable[Result]:
    """Postfix's MTA-STS policy map answers as Postfix asks it before each delivery (its resolver starts on the
    question): a map that does not answer holds every outbound message in the queue."""
    if not spec.features.mta_sts_outbound:
        return
    domain = spec.domains[0].name
    out = run(f"timeout {seconds} postmap -q {shlex.quote(domain)} {hostinfo.MTA_STS_POLICY_MAP} 2>&1; "
              "echo status=$?").strip().splitlines()
    status = out[-1].removeprefix("status=") if out else "?"
    answer = [line for line in out[:-1] if not line.startswith("postmap:")]
    problems = [line.removeprefix("postmap: ") for line in out[:-1] if line.startswith("postmap:")]
    where = f"{spec.hostname} (postfix-mta-sts-resolver)"
    if status in ("0", "1") and not problems:
        yield ok("host.mta-sts-resolver", where, f"Postfix's policy map answers: {domain} "
                 + (f"-> {shown(answer[0], 80)}" if status == "0" and answer else "has no policy"))
    else:
        said = f"no answer within {seconds} s" if status == "124" else shown(problems[-1] if problems else
                                                                             " ".join(out), 160)
        yield error("host.mta-sts-resolver", where, f"Postfix's policy map does not answer ({said}): outbound "
                    "mail waits in the queue",
                    "`systemctl status mailhost-mta-sts.socket postfix-mta-sts-resolver` on the host; run the "
                    "deploy again")


def check_spam_learning(run: Run, spec: Spec) -> Iterable[Result]:
    """What a move into or out of Junk needs on the host: the compiled IMAPSieve scripts and rspamd's controller
    answering `rspamc` on loopback (the end-to-end tests train it through IMAP)."""
    if not spec.features.spam_learning:
        return
    scripts = [f"/etc/dovecot/sieve/learn-{kind}.svbin" for kind in ("spam", "ham")]
    out = run(" ; ".join(f"test -s {path} || echo missing {path}" for path in scripts)
              + f" ; rspamc --connect {hostinfo.RSPAMD_CONTROLLER} stat >/dev/null 2>&1 || echo controller down")
    if out.strip():
        yield error("host.spam-learning", spec.hostname,
                    "spam learning cannot work: " + "; ".join(out.strip().splitlines()),
                    "run the deploy again (it compiles the scripts and runs rspamd's controller)")
    else:
        yield ok("host.spam-learning", spec.hostname, "moves into and out of Junk reach rspamd's Bayes classifier")
