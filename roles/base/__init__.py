"""Base: who the host is (hostname, FQDN in /etc/hosts, /etc/mailname)."""

from pyinfra.api import deploy
from pyinfra.operations import files, server


@deploy("base")
def apply(fqdn: str) -> None:
    short = fqdn.split(".", 1)[0]
    server.hostname(name="Hostname is the mail host name", hostname=fqdn)
    # Resolve our own FQDN without DNS, the Debian way (127.0.1.1), so Postfix/Dovecot start offline.
    files.line(
        name="/etc/hosts maps the FQDN",
        path="/etc/hosts",
        line=r"^127\.0\.1\.1\s",
        replace=f"127.0.1.1\t{fqdn}\t{short}",
    )
    files.put(
        name="/etc/mailname is the mail host name",
        src=_text(f"{fqdn}\n"),
        dest="/etc/mailname",
        mode="644",
    )


def _text(content: str):
    from io import StringIO
    return StringIO(content)
