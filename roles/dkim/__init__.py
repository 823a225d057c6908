"""DKIM keys: one per domain and selector, RSA and Ed25519 (RFC 8463), made on the host; rspamd signs with them.

Keys never leave the host (0600, owned by rspamd's user) and a re-run never regenerates one. RSA keys are PEM;
Ed25519 keys are what rspamd loads: base64 of the 32-byte seed and the 32-byte public key, on one line. The
public halves are kept beside them (`<selector>.<algorithm>.pub`) and are a fact (`DkimPublicKeys`) for the
DNS stage. The keys a run needs are made ahead, in the background while the packages install (`make_ahead`),
and taken once rspamd's user exists (`apply`).

Renaming a selector in the spec rotates the domain's key over several runs (`mailhost.dkim_keys`): this role makes
the new key, notes when keys are published and retired, and removes a key whose retention is over; rspamd signs
with the keys the rotation's plan says.

Hosts that mailhost set up before rspamd signed have their RSA keys in OpenDKIM's directory: each is moved here
under its own name (the published key stays valid), and OpenDKIM is removed once Postfix no longer uses it.
"""

from __future__ import annotations

import time

from pyinfra import host, logger
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation
from pyinfra.operations import server

from mailhost import dkim_keys, hostinfo
from mailhost.dns import authoritative
from mailhost.dns.records import txt
from mailhost.spec import Spec
from roles._facts import read_once

KEY_DIR, OWNER = hostinfo.DKIM_KEY_DIR, hostinfo.DKIM_KEY_OWNER
key_path, public_path = hostinfo.dkim_key_path, hostinfo.dkim_public_path
OPENDKIM_KEY_DIR = "/etc/opendkim/keys"  # where mailhost kept RSA keys while OpenDKIM signed


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["openssl"]


def signing_keys(spec: Spec) -> list[tuple[str, str, str]]:
    """(domain, selector, algorithm) of every key the spec signs with."""
    return sorted((d.name, s, a) for d in spec.domains for s, a in spec.dkim_keys(d))


class DkimPublicKeys(FactBase):
    """{(domain, selector, algorithm): base64 public key} for every key on the host."""

    def command(self) -> str:
        return hostinfo.DKIM_PUBLIC_KEYS

    def process(self, output: list[str]) -> dict[tuple[str, str, str], str]:
        return hostinfo.parse_dkim_public_keys(output)


class DkimState(FactBase):
    """The keys on the host, those rspamd signs with, when each was published and retired."""

    def command(self) -> str:
        return dkim_keys.HOST_DKIM_COMMAND

    @staticmethod
    def default() -> dkim_keys.HostKeys:
        return dkim_keys.HostKeys()  # a fresh host: no keys, nothing signs

    def process(self, output: list[str]) -> dkim_keys.HostKeys:
        return dkim_keys.HostKeys.parse(output)


_plans: dict[str, tuple[dkim_keys.KeyPlan, list[dkim_keys.KeyId]]] = {}


def key_plan(spec: Spec) -> tuple[dkim_keys.KeyPlan, list[dkim_keys.KeyId]]:
    """This run's plan for the keys, and the keys whose publication is to be noted after the DNS stage: decided
    once per host (the rspamd role and the deploy ask again). Without a DNS provider the records are published
    by hand, so a key counts as published from the first run that finds every nameserver serving it."""
    if host.name not in _plans:
        state, public = read_once(DkimState), read_once(DkimPublicKeys) or {}

        def served(key: dkim_keys.KeyId) -> bool | None:
            domain, selector, algorithm = key
            if key not in public:
                return None
            return authoritative.served_everywhere(spec.zone_of(domain), spec.dns.resolvers,
                                                   f"{selector}._domainkey.{domain}", "TXT",
                                                   txt(f"v=DKIM1; k={algorithm}; p={public[key]}"))

        plan = dkim_keys.decide(spec, state, time.time(), served)
        unnoted = [key for key in signing_keys(spec) if key not in state.published]
        marks = unnoted if spec.dns.provider else [key for key in unnoted if key in public and served(key)]
        _plans[host.name] = plan, marks
    return _plans[host.name]


def rotating(spec: Spec) -> bool:
    """Whether the DNS stage has DKIM records to add or withdraw after this role ran."""
    return key_plan(spec)[0].changes_dns


class DkimKeyFiles(FactBase):
    """{path: "mode user group"} of the key directory, its domain directories, their keys and public halves."""

    def command(self) -> str:
        return (f"find {KEY_DIR} -maxdepth 2 \\( -type d -o -name '*.rsa' -o -name '*.ed25519' -o -name '*.pub' \\) "
                f"-printf '%p %m %u %g\\n' 2>/dev/null || true")

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


# How each algorithm's key is made into "$t/key" ($t: its scratch directory; $bits: the RSA key size).
_MAKE = {
    "rsa": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:\"$bits\" -out \"$t/key\" 2>/dev/null",
    # PKCS#8 DER of an Ed25519 key ends with the seed; its SubjectPublicKeyInfo with the public key.
    "ed25519": "openssl genpkey -algorithm ed25519 -outform DER -out \"$t/der\" && { tail -c 32 \"$t/der\"; "
               "openssl pkey -inform DER -in \"$t/der\" -pubout -outform DER | tail -c 32; } "
               "| base64 -w0 > \"$t/key\" && rm -f \"$t/der\"",
}


# Keys made ahead, while the packages install (`make_ahead`): root's until `signing_keys_exist` takes them.
AHEAD = "/var/lib/mailhost/dkim-ahead"
AHEAD_PID = f"{AHEAD}/pid"
AHEAD_RUNNING = f'[ -s {AHEAD_PID} ] && grep -qs dkim-ahead "/proc/$(cat {AHEAD_PID})/cmdline"'  # (pids are reused)
_JOB = "d=${1%%/*}; rest=${1#*/}; s=${rest%/*}; a=${rest#*/}"  # "domain/selector/algorithm" -> $d $s $a
_TAKE_OVER = f'[ "$a" = rsa ] && [ -f "{OPENDKIM_KEY_DIR}/$d/$s.private" ]'
_AHEAD_KEY = f'"{AHEAD}/$d/$s.$a"'


_HALF = f'k="$t/key"; {hostinfo.DKIM_PUBLIC_HALF} > "$t/pub"'  # "$t/key"'s public half in "$t/pub"


def _make(bits: int) -> str:
    """Shell: a new key of algorithm $a in "$t/key", its public half in "$t/pub"."""
    return f'if [ "$a" = rsa ]; then bits={int(bits)}; {_MAKE["rsa"]}; else {_MAKE["ed25519"]}; fi; {_HALF}'


def _missing(keys: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Those of `keys` the host lacks (as read before the run)."""
    present = read_once(DkimKeyFiles)
    return [key for key in keys if key_path(*key) not in present]


def _each(jobs: list[tuple[str, str, str]], script: str, cores: str = "$(nproc)") -> StringCommand:
    """`script` once per (domain, selector, algorithm), `cores` (a shell word) at once: as many as the host has."""
    return StringCommand("for job in", *(QuoteString(f"{d}/{s}/{a}") for d, s, a in jobs),
                         f"; do echo \"$job\"; done | xargs -P {cores} -I JOB sh -ec", QuoteString(script), "sh JOB")


def make_ahead_command(missing: list[tuple[str, str, str]], bits: int) -> StringCommand:
    """Start making `missing` under AHEAD in the background, on idle cycles only and leaving one core alone (the
    install goes first: on the 2-core lab, keys made on both cores slowed a 100-domain install by 7-9 s even
    at idle priority), unless a job still runs; a key OpenDKIM has is left to be taken over, and a key made by an
    earlier, cut-off job is kept. Each key appears whole or not at all (renamed from a scratch directory).
    Without openssl yet, nothing."""
    script = (f"{_JOB}; [ -s {_AHEAD_KEY} ] && exit 0; {_TAKE_OVER} && exit 0; t=$(mktemp -d {AHEAD}/.new.XXXXXX); "
              f'{_make(bits)}; [ -s "$t/pub" ]; mkdir -p "{AHEAD}/$d"; mv "$t/pub" {_AHEAD_KEY}.pub; '
              f'mv "$t/key" {_AHEAD_KEY}; rm -rf "$t"')
    job = StringCommand(f"rm -rf {AHEAD}/.new.* &&", _each(missing, script, cores="$(nproc --ignore=1)"))
    return StringCommand(
        f"command -v openssl >/dev/null || exit 0; install -d -m 700 {AHEAD} && if {AHEAD_RUNNING}; then :; else",
        "setsid chrt --idle 0 sh -c", QuoteString(StringCommand(f": dkim-ahead;", job)),
        f">/dev/null 2>&1 </dev/null & echo $! >{AHEAD_PID}; fi")


def make_keys_command(missing: list[tuple[str, str, str]], bits: int) -> StringCommand:
    """One job per key, as many at once as the host has cores; each key made in a scratch directory and
    renamed into place, so an interrupted run leaves no half key. An RSA key OpenDKIM has under the same domain
    and selector is taken over rather than made (its record is published already); a key made ahead
    (`make_ahead`: waited for, its job raised to normal priority now that the keys are needed) is taken as it
    is. Names reach the shell quoted (validated names, quoted all the same)."""
    script = (f"{_JOB}; t=$(mktemp -d {KEY_DIR}/.new.XXXXXX); "
              f'if {_TAKE_OVER}; then cp "{OPENDKIM_KEY_DIR}/$d/$s.private" "$t/key"; {_HALF}; '
              f'elif [ -s {_AHEAD_KEY} ] && [ -s {_AHEAD_KEY}.pub ]; then mv {_AHEAD_KEY} "$t/key"; '
              f'mv {_AHEAD_KEY}.pub "$t/pub"; else {_make(bits)}; fi; [ -s "$t/pub" ]; '
              f"install -d -m 750 -o {OWNER} -g {OWNER} \"{KEY_DIR}/$d\"; "
              f"chown {OWNER}:{OWNER} \"$t/key\" \"$t/pub\"; chmod 600 \"$t/key\"; chmod 644 \"$t/pub\"; "
              f"mv \"$t/pub\" \"{KEY_DIR}/$d/$s.$a.pub\"; mv \"$t/key\" \"{KEY_DIR}/$d/$s.$a\"; rm -rf \"$t\"")
    return StringCommand(
        f"if {AHEAD_RUNNING}; then for p in $(pgrep -s \"$(cat {AHEAD_PID})\"); do chrt --other -p 0 \"$p\"; done;",
        f"fi >/dev/null 2>&1; timeout 900 sh -c 'while {AHEAD_RUNNING}; do sleep 0.1; done';",
        f"install -d -m 750 -o {OWNER} -g {OWNER} {KEY_DIR} && rm -rf {KEY_DIR}/.new.* &&", _each(missing, script),
        f"&& rm -rf {AHEAD}")


def public_halves_command(keys: list[tuple[str, str, str]]) -> StringCommand:
    """Each key's public half written beside it (`hostinfo.DKIM_PUBLIC_KEYS` reads it)."""
    return StringCommand("set -e; for k in", *(QuoteString(key_path(*key)) for key in keys),
                         f'; do a=${{k##*.}}; {hostinfo.DKIM_PUBLIC_HALF} > "$k.pub.new"; [ -s "$k.pub.new" ]; '
                         f'chown {OWNER}:{OWNER} "$k.pub.new"; chmod 644 "$k.pub.new"; mv "$k.pub.new" "$k.pub"; done')


@operation(is_idempotent=True)
def signing_keys_exist(keys: list[tuple[str, str, str]], bits: int):
    """Every (domain, selector, algorithm) has its key, made on the host; directories 0750 and keys 0600, owned
    by rspamd's user. One operation for all domains: a key is a few hundred ms of CPU at most, made in
    parallel."""
    present = read_once(DkimKeyFiles)
    wanted = {KEY_DIR: "750", **{f"{KEY_DIR}/{d}": "750" for d, _, _ in keys},
              **{key_path(*key): "600" for key in keys}}
    missing = _missing(keys)
    if missing:
        yield make_keys_command(missing, bits)
    if halves := [key for key in keys if key_path(*key) in present and public_path(*key) not in present]:
        yield public_halves_command(halves)  # keys made before their public halves were kept
    wrong = [path for path, mode in wanted.items() if path in present and present[path] != f"{mode} {OWNER} {OWNER}"]
    for path in wrong:
        yield StringCommand(f"chown {OWNER}:{OWNER}", QuoteString(path), "&& chmod", wanted[path], QuoteString(path))
    if not missing and not halves and not wrong:
        host.noop("every DKIM key exists, private to rspamd")


class OpenDkimInstalled(FactBase):
    """Whether OpenDKIM (which signed before rspamd did) or the keys mailhost gave it are still on the host."""

    def command(self) -> str:
        return (f"dpkg-query -W -f '${{db:Status-Abbrev}}\\n' opendkim opendkim-tools 2>/dev/null | grep -q '^.i' "
                f"|| [ -d {OPENDKIM_KEY_DIR} ] && echo yes || echo no")

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


@operation(is_idempotent=True)
def opendkim_removed():
    """OpenDKIM, its config and its copies of the keys are gone, once Postfix no longer sends it mail."""
    if not host.get_fact(OpenDkimInstalled):
        host.noop("OpenDKIM is not installed")
        return
    yield "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q opendkim opendkim-tools"
    yield "rm -rf /etc/opendkim"


def notes_command(keys: list[dkim_keys.KeyId], kind: str) -> StringCommand:
    """Note now as when each key was published or retired (a note already there is kept)."""
    words: list = ["now=$(date +%s)"]
    for key in keys:
        path = QuoteString(dkim_keys.marker(key, kind))
        words += ["&& mkdir -p", QuoteString(dkim_keys.marker(key, kind).rsplit("/", 1)[0]),
                  "&& { [ -f", path, "] || echo \"$now\" >", path, "; }"]
    return StringCommand(*words)


def remove_command(keys: list[dkim_keys.KeyId]) -> StringCommand:
    """A retired key's private half and its notes go (its record goes with them: the DNS stage reads the host
    again before it writes)."""
    paths = [QuoteString(p) for key in keys
             for p in (key_path(*key), public_path(*key), dkim_keys.marker(key, "published"),
                       dkim_keys.marker(key, "retired"))]
    return StringCommand("rm -f", *paths)


@deploy("dkim")
def make_ahead(spec: Spec) -> None:
    """Before the install: the keys this run will make are made in the background meanwhile, on the cycles
    the install leaves (100 domains' are ~15-20 s of CPU; a VPS's install mostly waits on its mirror).
    `apply` waits for them and takes them."""
    if missing := _missing(signing_keys(spec)):
        server.shell(name="DKIM keys are made meanwhile (in the background)",
                     commands=[make_ahead_command(missing, spec.dkim.key_bits)])


@deploy("dkim")
def apply(spec: Spec) -> None:
    plan, _ = key_plan(spec)
    for note in plan.notes:
        host.log_styled(note, fg="yellow", log_func=logger.warning)
    signing_keys_exist(name="DKIM keys are made on the host, private to rspamd", keys=signing_keys(spec),
                       bits=spec.dkim.key_bits)
    state = read_once(DkimState)
    if plan.retire:
        server.shell(name="DKIM rotation: the keys replaced stop signing (noted)",
                     commands=[notes_command(plan.retire, "retired")])
    if back := [key for key in plan.sign if key in state.retired]:  # a key the spec named again signs again
        server.shell(name="DKIM rotation: keys named again sign again",
                     commands=[StringCommand("rm -f", *(QuoteString(dkim_keys.marker(k, "retired")) for k in back))])
    if plan.remove:
        server.shell(name="DKIM rotation: keys past dkim.retention are removed",
                     commands=[remove_command(plan.remove)])


@deploy("dkim")
def mark_published(spec: Spec) -> None:
    """After the DNS stage: note when each key's record went out (a rotation to it waits dns.ttl from then)."""
    _, marks = key_plan(spec)
    if marks:
        server.shell(name="DKIM keys' publication is noted", commands=[notes_command(marks, "published")])


@deploy("dkim")
def retire_opendkim() -> None:
    opendkim_removed(name="OpenDKIM is gone (rspamd signs)")
