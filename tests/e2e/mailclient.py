"""A mail client for the end-to-end tests: what a person's mail program does against a lab mail host."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage


def tls_context(lab) -> ssl.SSLContext:
    """Trust only the lab's ACME CA: certificates must be the ones certbot obtained."""
    return ssl.create_default_context(cafile=str(lab.acme.root_file))


def message(sender: str, to: str, subject: str, body: str = "hello\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mailhost.test>"
    msg.set_content(body)
    return msg


def imap_fetch(lab, mail, address: str, subject: str, folder: str = "INBOX", timeout: float = 30) -> bytes:
    """Log in over IMAPS (certificate verified against the ACME CA and the host name) and fetch by subject."""
    deadline = time.monotonic() + timeout
    with imaplib.IMAP4_SSL(mail.hostname, 993, ssl_context=tls_context(lab), timeout=20) as imap:
        imap.login(address, mail.passwords[address])
        while True:
            imap.select(folder)
            _, found = imap.search(None, "SUBJECT", f'"{subject}"')
            if found[0]:
                _, data = imap.fetch(found[0].split()[-1], "(RFC822)")
                return data[0][1]
            if time.monotonic() > deadline:
                raise AssertionError(f"{subject!r} not in {address}'s {folder} after {timeout}s")
            time.sleep(0.5)


def send_inbound(lab, hostname: str, to: str, subject: str, body: str = "hello\n") -> None:
    """Mail from the outside world (remote.test) to `to`, through port 25 with STARTTLS."""
    with smtplib.SMTP(hostname, 25, local_hostname="client.remote.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(lab))
        smtp.send_message(message("someone@remote.test", to, subject, body))
