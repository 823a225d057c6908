"""nginx on 443: the MTA-STS policy (RFC 8461) and the mail client autoconfig file for every domain
(`mailhost.web`), nothing else. Port 80 stays certbot's (HTTP-01); the host name is served with the mail
certificate, the web names with their own. One worker: it serves two small files.
"""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations.util import any_changed

from mailhost import web
from mailhost.spec import Spec
from roles._config import config_file
from roles._units import unit
from roles.certbot import live_dir

FILES = "/etc/nginx/mailhost"


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["nginx"] if spec.features.web else []


@deploy("nginx")
def apply(spec: Spec) -> None:
    if not spec.features.web:
        return
    changed = [config_file(__file__, f"{FILES}/mta-sts.txt", content=web.policy(spec)),
               config_file(__file__, f"{FILES}/config-v1.1.xml", content=web.autoconfig(spec))]
    changed.append(config_file(__file__, "/etc/nginx/nginx.conf", check="nginx -q -t -c {path}", spec=spec,
                               mail_tls=live_dir(spec), certificates=web.web_certificates(spec), files=FILES,
                               policy_path=web.POLICY_PATH, autoconfig_paths=web.AUTOCONFIG_PATHS))
    unit(name="nginx reloads its config", service="nginx.service", reloaded=True, _if=any_changed(*changed))
    unit(name="nginx is running", service="nginx.service", running=True, enabled=True)
