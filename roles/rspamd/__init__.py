"""rspamd (+ Redis): the milter that checks inbound mail (SPF, DKIM, DMARC, ARC), adds spam headers
and rejects above a threshold. It does not sign (OpenDKIM does)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from mailhost.spec import Spec
from roles._config import config_file

PACKAGES = ["rspamd", "redis-server"]
LOCAL_D = ["redis.conf", "actions.conf", "milter_headers.conf", "dkim_signing.conf",
           "greylist.conf", "options.inc", "worker-proxy.inc", "worker-controller.inc", "worker-normal.inc"]


@deploy("rspamd")
def apply(spec: Spec) -> None:
    systemd.service(name="Redis is running", service="redis-server", running=True, enabled=True)
    changed = [config_file(__file__, f"/etc/rspamd/local.d/{name}", spec=spec) for name in LOCAL_D]
    # rspamd reads its config only at (re)start, so installed-then-tested is safe: a bad file is
    # caught here and the running rspamd keeps its old config.
    server.shell(name="rspamd config is valid", commands=["rspamadm configtest"], _if=any_changed(*changed))
    # A restart, not a reload: a reload keeps the old set of worker processes. Postfix accepts mail
    # meanwhile (milter_default_action = accept). Only if running; a stopped rspamd starts below.
    systemd.service(name="rspamd restarts for new config", service="rspamd", restarted=True,
                    _if=any_changed(*changed))
    systemd.service(name="rspamd is running", service="rspamd", running=True, enabled=True)
