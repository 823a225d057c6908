"""Converge one mail host: `pyinfra inventory/<env>.py deploy.py`.

Stages (spec -> host roles -> DNS -> verify); this is the host part so far.
"""

from pyinfra import host

from roles import base

base.apply(fqdn=host.data.mail_hostname)
