"""POP3 (RFC 1939)."""

from __future__ import annotations

from .base import ProtocolError, Reply, Session


class Pop3Session(Session):
    """POP3 (RFC 1939), here only over implicit TLS (port 995)."""

    def read_reply(self) -> Reply:
        line = self.readline()
        code, _, text = line.partition(" ")
        if code.upper() not in ("+OK", "-ERR"):
            raise ProtocolError(f"not a POP3 reply: {line[:80]!r}")
        return Reply(code.upper(), (text,))

    def hello(self) -> None:
        with self.step("greeting"), self.patiently():
            self.greeting = self.read_reply()
        self.expect(self.greeting, "+OK", "greeting")

    def goodbye(self) -> None:
        self.command("QUIT")
