"""ManageSieve (RFC 5804)."""

from __future__ import annotations

import re
import ssl

from .base import Reply, Session


class SieveSession(Session):
    """ManageSieve (RFC 5804): the greeting is the capability list, ended by OK."""

    def read_reply(self) -> Reply:
        lines = []
        while True:
            line = self.readline()
            word = line.split(" ", 1)[0].upper()
            if word in ("OK", "NO", "BYE"):
                return Reply(word, (*lines, line[len(word):].strip()))
            lines.append(line)

    def hello(self) -> None:
        with self.step("greeting"), self.patiently():
            self.greeting = self.read_reply()
        self._learn(self.expect(self.greeting, "OK", "greeting"))

    def _learn(self, reply: Reply) -> None:
        quoted = (re.findall(r'"([^"]*)"', line) for line in reply.lines[:-1])
        self.capabilities = {q[0].upper(): " ".join(q[1:]) for q in quoted if q}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "OK", context)

    def after_tls(self) -> None:
        with self.step("capabilities after STARTTLS"):  # RFC 5804 2.2: sent unasked after the handshake
            self._learn(self.expect(self.read_reply(), "OK", "capabilities after STARTTLS"))

    def goodbye(self) -> None:
        self.command("LOGOUT")
