"""Real hosts. Copy and edit: one entry per mail host, reachable as root (or sudo) over SSH.

    pyinfra inventory/prod.py deploy.py --dry   # show the plan
    pyinfra inventory/prod.py deploy.py         # converge
"""

mail = [
    ("mail.example.org", {"mail_hostname": "mail.example.org"}),
]
