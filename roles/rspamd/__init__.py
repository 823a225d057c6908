"""rspamd (+ Redis): the milter that checks inbound mail (SPF, DKIM, DMARC, ARC), adds spam headers
and rejects above a threshold; it DKIM-signs what our users send and ARC-seals what arrives for our domains,
with the keys `roles.dkim` makes."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from mailhost import hostinfo
from mailhost.spec import Spec
from roles._config import config_file
from roles._units import unit
from roles.dkim import key_path, key_plan


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["rspamd", "redis-server", "python3"]  # python3: rspamd-trim (below)


def packages_ahead(spec: Spec) -> list[str]:
    """Installed ahead of the stack (`roles.base.apply`): the package starts rspamd, and that first start
    compiles the pattern caches (10-15 s on the lab) while the stack installs, so the restart with our config
    (this role, last) finds them made instead of waiting for them (Debian 13: 4.8 -> 1.0 s)."""
    return ["rspamd"]


TRIM = "/usr/local/lib/mailhost/rspamd-trim"
# Waits until rspamd's start has forked its workers and its hs_helper has compiled the regexp caches (about 5 s
# after the workers on the lab; it logs a line when done). Restarted before that, rspamd compiles them after the
# restart, and its main process loads them after rspamd-trim has run: 1.4 MB resident until the next reload
# (seen on both releases once the install no longer waited for the CA). An hs_helper over two minutes old
# finished long ago (its line may be rotated away); none two seconds after the workers: no Hyperscan here.
FIRST_START_DONE = (
    "timeout 120 sh -c 'until pgrep -f \"^rspamd: .*(proxy|normal|controller)\" >/dev/null; do sleep 0.2; done'; "
    "h=$(timeout 2 sh -c 'until pgrep -f \"^rspamd: hs_helper\"; do sleep 0.1; done'); "
    "if [ -n \"$h\" ] && [ $(ps -o etimes= -p \"$h\") -lt 120 ]; then timeout 120 sh -c "
    "'until grep -qs \"#$1(hs_helper).*compiled [0-9]* regular expressions\" /var/log/rspamd/rspamd.log; "
    "do sleep 0.2; done' - \"$h\"; fi")
LOCAL_D = ["redis.conf", "actions.conf", "milter_headers.conf", "dkim_signing.conf", "arc.conf",
           "greylist.conf", "options.inc", "worker-proxy.inc", "worker-controller.inc", "worker-normal.inc"]


def arc_keys(keys: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The key each domain seals ARC with: its first RSA key that signs."""
    first: dict[str, tuple[str, str, str]] = {}
    for key in keys:
        if key[2] == "rsa":
            first.setdefault(key[0], key)
    return list(first.values())


@deploy("rspamd")
def apply(spec: Spec) -> None:
    unit(name="Redis is running", service="redis-server.service", running=True, enabled=True)
    keys = key_plan(spec)[0].sign  # the spec's keys, or during a rotation the keys they replace
    changed = [config_file(__file__, f"/etc/rspamd/local.d/{name}", spec=spec, keys=keys, arc_keys=arc_keys(keys),
                           key_path=key_path) for name in LOCAL_D]
    # rspamd reads its config only at (re)start, so installed-then-tested is safe: a bad file is
    # caught here and the running rspamd keeps its old config.
    server.shell(name="rspamd config is valid", commands=["rspamadm configtest"], _if=any_changed(*changed))
    # rspamd's main process reads its Hyperscan databases whole and never uses them: after each start and
    # reload, rspamd-trim pages them out of it (42-46 MB of the stack's idle memory; the script says how).
    config_file(__file__, TRIM, mode="755")
    unit_file = config_file(__file__, "/etc/systemd/system/rspamd.service.d/mailhost.conf")
    systemd.daemon_reload(name="systemd reads rspamd's drop-in", _if=unit_file.did_change)
    changed.append(unit_file)
    # A restart, not a reload: a reload keeps the old set of worker processes. Postfix accepts mail from
    # outside meanwhile (milter_default_action = accept); submissions wait (tempfail: they would leave
    # unsigned). Only if running; a stopped rspamd starts below.
    # An rspamd still in its first start is let finish (FIRST_START_DONE), so the restart finds the caches and
    # starts lean (see roles.base.POLICY).
    restart = server.shell(name="rspamd restarts for new config", _if=any_changed(*changed), commands=[
        f"if systemctl -q is-active rspamd; then {FIRST_START_DONE}; systemctl restart rspamd; fi"])
    running = unit(name="rspamd is running", service="rspamd.service", running=True, enabled=True)
    # Started or restarted: the deploy ends once rspamd answers (signing, and learning when on), so what follows
    # (verify's probe, a user's first message) finds it.
    server.shell(name="rspamd answers", _if=any_changed(restart, running),
                 commands=[hostinfo.rspamd_answers(spec.features.controller)])
