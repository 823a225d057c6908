"""Real hosts. Copy and edit: one entry per mail host, reachable as root over SSH, each naming its spec.

    pyinfra inventory/prod.py deploy.py --dry   # show the plan, change nothing
    pyinfra inventory/prod.py deploy.py         # converge
"""

from mailhost.inventory import mail_host

mail = [
    mail_host("mail.example.org", spec="specs/example.yaml"),
]
