"""SMTP (RFC 5321) with EHLO, STARTTLS (RFC 3207), AUTH PLAIN (RFC 4954) and a message, for the probe."""

from __future__ import annotations

import re
import ssl

from .base import HELO_NAME, ProtocolError, Reply, Session, sasl_plain


class SmtpSession(Session):
    """SMTP (RFC 5321) with EHLO and STARTTLS (RFC 3207)."""

    ehlo_reply: Reply

    def read_reply(self) -> Reply:
        lines = []
        while True:
            line = self.readline()
            code, sep = line[:3], line[3:4]
            if not code.isdigit() or sep not in ("-", " ", ""):
                raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:])
            if sep != "-":
                return Reply(code, tuple(lines))

    def hello(self) -> None:
        # A multi-line greeting is read whole: postscreen sends "220-" first and takes a client that talks
        # before the last line for a bot.
        with self.step("greeting"), self.patiently():
            self.greeting = self.read_reply()
        self.expect(self.greeting, "220", "greeting")
        self.ehlo()

    def ehlo(self) -> None:
        self.ehlo_reply = self.expect(self.command(f"EHLO {HELO_NAME}", "EHLO"), "250", "EHLO")
        words = (line.split(None, 1) for line in self.ehlo_reply.lines[1:])
        self.capabilities = {w[0].upper(): w[1] if len(w) > 1 else "" for w in words if w}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "220", context)

    def after_tls(self) -> None:
        self.ehlo()

    def goodbye(self) -> None:
        self.command("QUIT")

    def login(self, user: str, password: str) -> None:
        """AUTH PLAIN (RFC 4954), as a mail client does once TLS is up; the step names never hold the secret."""
        self.expect(self.command(f"AUTH PLAIN {sasl_plain(user, password)}", "AUTH"), "235", "AUTH")

    def send_message(self, sender: str, recipients: list[str], message: bytes) -> None:
        """MAIL, RCPT, DATA; `message` with CRLF line ends (email.policy.SMTP), dot-stuffed here."""
        self.expect(self.command(f"MAIL FROM:<{sender}>", "MAIL FROM"), "250", "MAIL FROM")
        for recipient in recipients:
            self.expect(self.command(f"RCPT TO:<{recipient}>", "RCPT TO"), "25", "RCPT TO")
        self.expect(self.command("DATA"), "354", "DATA")
        data = re.sub(rb"(?m)^\.", b"..", message)
        with self.step("end of data"):
            self.sock.sendall(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            reply = self.read_reply()
        self.expect(reply, "250", "end of data")
