"""IMAP (RFC 9051/3501): tagged commands, capabilities, and for the probe login, search, fetch and delete (and
read-only search for `mailhost reports`)."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import ssl

from .base import ProtocolError, Reply, Session, SessionFailure, sasl_plain

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # IMAP's, any locale


class ImapSession(Session):
    """IMAP (RFC 9051/3501): tagged commands, capabilities in the greeting or from CAPABILITY."""

    def __init__(self, address: str, port: int, hostname: str, timeout: float):
        self._tags = itertools.count(1)
        super().__init__(address, port, hostname, timeout)

    def command(self, line: str, step: str | None = None) -> Reply:
        tag = f"v{next(self._tags)}"
        with self.step(step or line.split()[0]):
            self.send(f"{tag} {line}")
            untagged, literals = [], []
            while not (got := self.readline()).startswith(tag + " "):
                untagged.append(got)
                size = re.search(r"\{(\d+)\}$", got)
                if size:
                    literals.append(self.read_exactly(int(size[1])))
        status, _, text = got[len(tag) + 1:].partition(" ")
        return Reply(status.upper(), (*untagged, text), tuple(literals))

    def hello(self) -> None:
        with self.step("greeting"), self.patiently():
            line = self.readline()
        if not line.upper().startswith(("* OK", "* PREAUTH")):
            raise SessionFailure("greeting", ProtocolError(f"the server answered {line[:80]!r}"))
        self.greeting = Reply("OK", (line,))
        listed = re.search(r"\[CAPABILITY ([^\]]*)\]", line, re.IGNORECASE)
        if listed:
            self._learn(listed.group(1))
        else:
            self.capability()

    def capability(self) -> None:
        reply = self.expect(self.command("CAPABILITY"), "OK", "CAPABILITY")
        for line in reply.lines:
            if line.upper().startswith("* CAPABILITY "):
                self._learn(line[len("* CAPABILITY "):])

    def _learn(self, words: str) -> None:
        self.capabilities = {w.upper(): "" for w in words.split()}

    def starttls(self, context: ssl.SSLContext) -> None:
        self._starttls("STARTTLS", "OK", context)

    def after_tls(self) -> None:
        self.capability()

    def goodbye(self) -> None:
        self.command("LOGOUT")

    def login(self, user: str, password: str) -> None:
        """AUTHENTICATE PLAIN with an initial response (RFC 4959): any password, no quoting rules to get wrong."""
        self.expect(self.command(f"AUTHENTICATE PLAIN {sasl_plain(user, password)}", "AUTHENTICATE"), "OK",
                    "AUTHENTICATE")

    def search_subject(self, mailbox: str, subject: str) -> list[str]:
        """The UIDs of the messages in `mailbox` whose subject contains `subject` (ASCII, no quotes)."""
        self.expect(self.command(f'SELECT "{mailbox}"', "SELECT"), "OK", "SELECT")
        reply = self.expect(self.command(f'UID SEARCH SUBJECT "{subject}"', "SEARCH"), "OK", "SEARCH")
        return [uid for line in reply.lines if line.upper().startswith("* SEARCH") for uid in line.split()[2:]]

    def examine_search(self, mailbox: str, subject: str, since: dt.date | None = None) -> list[str]:
        """As `search_subject`, with the mailbox opened read-only (EXAMINE: nothing marked seen or changed),
        only messages since a day if given."""
        self.expect(self.command(f'EXAMINE "{mailbox}"', "EXAMINE"), "OK", "EXAMINE")
        when = f" SINCE {since.day}-{MONTHS[since.month - 1]}-{since.year}" if since else ""
        reply = self.expect(self.command(f'UID SEARCH SUBJECT "{subject}"{when}', "SEARCH"), "OK", "SEARCH")
        return [uid for line in reply.lines if line.upper().startswith("* SEARCH") for uid in line.split()[2:]]

    def fetch(self, uid: str) -> bytes:
        """The whole message, as stored (without marking it read)."""
        reply = self.expect(self.command(f"UID FETCH {uid} BODY.PEEK[]", "FETCH"), "OK", "FETCH")
        if not reply.literals:
            raise SessionFailure("FETCH", ProtocolError(f"no message {uid} in the answer"))
        return reply.literals[0]

    def delete(self, uids: list[str]) -> None:
        self.expect(self.command(f"UID STORE {','.join(uids)} +FLAGS.SILENT (\\Deleted)", "STORE"), "OK", "STORE")
        self.expect(self.command("EXPUNGE"), "OK", "EXPUNGE")
