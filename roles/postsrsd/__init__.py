"""postsrsd: the Sender Rewriting Scheme for mail forwarded to outside addresses (an alias, a sieve redirect).

Forwarded as it came, such mail would reach the receiver with the original sender's domain in the envelope and
come from our address: SPF fails there, and with the sender's DMARC at `reject` the mail is lost. Postfix asks
postsrsd (127.0.0.1:10001, Postfix's tcp table) to rewrite a foreign envelope sender into an address of our
SRS domain, and to reverse such an address (10002) when a bounce comes back. Debian 12 and 13 ship the same
postsrsd (1.10). The secret is made by the package on the host and never leaves it.

Only on a host whose spec forwards outside (`Spec.srs_domain`); on one that stopped, it is removed.
"""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import apt

from mailhost.spec import Spec
from roles._config import config_file
from roles._units import unit


def packages(spec: Spec) -> list[str]:
    """What this role needs installed (`roles.all_packages` installs every role's in one apt transaction)."""
    return ["postsrsd"] if spec.srs_domain else []


@deploy("postsrsd")
def apply(spec: Spec) -> None:
    if not spec.srs_domain:
        apt.packages(name="postsrsd is not installed (nothing forwards outside)", packages=["postsrsd"],
                     present=False, purge=True)
        return
    config = config_file(__file__, "/etc/default/postsrsd", spec=spec, check="sh -n {path}")
    unit(name="postsrsd restarts for new config", service="postsrsd.service", restarted=True,
         _if=config.did_change)
    unit(name="postsrsd is running", service="postsrsd.service", running=True, enabled=True)
