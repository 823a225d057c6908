"""A trivial deploy for lab tests of the hosts themselves: set the host's identity, nothing else."""

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server

server.hostname(name="Hostname", hostname=host.data.mail_hostname)
files.put(name="/etc/mailname", src=StringIO(f"{host.data.mail_hostname}\n"), dest="/etc/mailname", mode="644")
