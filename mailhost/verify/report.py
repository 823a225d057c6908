"""The verify report: results grouped per domain for people, sorted and counted for machines.

The output depends only on the results, never on the order checks finished in or on the clock, so two
runs that find the same things print the same bytes and a diff of two reports shows what changed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from itertools import groupby

from .result import Result, Status

MARKS = {Status.OK: "✓", Status.WARN: "!", Status.ERROR: "✗", Status.TIMEOUT: "⏱"}
WORDS = {Status.OK: "ok", Status.WARN: "WARN", Status.ERROR: "ERROR", Status.TIMEOUT: "TIMEOUT"}
WORD_WIDTH = max(map(len, WORDS.values()))
COLOURS = {Status.OK: "32", Status.WARN: "33", Status.ERROR: "31", Status.TIMEOUT: "35"}  # ANSI SGR
OTHER = "other"  # heading of results whose subject is in no group


def split_subject(subject: str) -> tuple[str, int | None]:
    """(host, port): "mail.example.org:465" -> ("mail.example.org", 465); an IPv6 address keeps its colons
    unless bracketed ("[2001:db8::1]:25")."""
    host, colon, port = subject.rpartition(":")
    if colon and port.isdigit() and (":" not in host or host.startswith("[")):
        return host.strip("[]").removesuffix(".").lower(), int(port)
    return subject.strip("[]").removesuffix(".").lower(), None


def group_of(subject: str, groups: Sequence[str]) -> str | None:
    """The longest group the subject's host is or is under (mail.example.org:465 -> mail.example.org, not
    example.org); without groups, the host itself; None if it is under none of them."""
    host, _ = split_subject(subject)
    if not groups:
        return host
    under = [g for g in groups if host == g or host.endswith("." + g)]
    return max(under, key=len, default=None)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _want_colour() -> bool:
    """https://no-color.org: a set, non-empty NO_COLOR turns colours off."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class Report:
    """Results of one verify run. `groups` are our domains and the host name: a block per group."""

    def __init__(self, results: Iterable[Result], groups: Iterable[str] = ()):
        names = sorted({g.removesuffix(".").lower() for g in groups})
        self.entries = sorted(((group_of(r.subject, names), r) for r in results), key=self._key)

    @staticmethod
    def _key(entry: tuple[str | None, Result]) -> tuple:
        """Group (ungrouped last), check, subject, then the rest, so equal input in any order sorts alike."""
        group, r = entry
        return group is None, group or "", r.check, r.subject, r.message, r.status.value, r.fix

    @property
    def results(self) -> list[Result]:
        return [r for _, r in self.entries]

    def counts(self) -> dict[str, int]:
        return {s.value: sum(r.status is s for r in self.results) for s in Status}

    def exit_code(self, strict: bool = False) -> int:
        """0 all ok, 2 any error or timeout, warnings alone: 1 when strict, else 0."""
        if any(r.status.failed for r in self.results):
            return 2
        return 1 if strict and any(r.status is Status.WARN for r in self.results) else 0

    def to_json(self) -> dict:
        return {"summary": self.counts(),
                "results": [{"group": group, **r.to_json()} for group, r in self.entries]}

    def summary(self) -> str:
        counts = self.counts()
        line = f"{counts['ok']} ok, {_plural(counts['warn'], 'warning')}, {_plural(counts['error'], 'error')}"
        return line + (f", {_plural(counts['timeout'], 'timeout')}" if counts["timeout"] else "")

    def text(self, color: bool | None = None) -> str:
        """For people: a block per group, a sub-block per other subject in it ("mail.example.org:465"),
        a line per result and a "fix:" line under each that is not ok. `color` (None: when stdout is a
        terminal and NO_COLOR is unset) also picks ✓ ! ✗ ⏱ marks over words that logs and grep keep."""
        colour = _want_colour() if color is None else color
        width = max((len(r.check) for r in self.results), default=0)
        lines: list[str] = []
        for group, entries in groupby(sorted(self.entries, key=self._text_key), key=lambda e: e[0]):
            lines.append(self._paint(group or OTHER, "1", colour))
            for subject, in_subject in groupby((r for _, r in entries), key=lambda r: r.subject):
                indent = "  "
                if split_subject(subject) != (group, None):
                    lines.append(f"  {subject}")
                    indent = "    "
                for r in in_subject:
                    lines += self._lines(r, indent, width, colour)
            lines.append("")
        lines.append(self.summary())
        return "\n".join(lines) + "\n"

    @classmethod
    def _text_key(cls, entry: tuple[str | None, Result]) -> tuple:
        """As for JSON, but a group's own subject first and then the others by host and port (25 before 465)."""
        group, r = entry
        host, port = split_subject(r.subject)
        return group is None, group or "", (host, port) != (group, None), host, port or 0, r.subject, cls._key(entry)

    def _lines(self, r: Result, indent: str, width: int, colour: bool) -> list[str]:
        mark = MARKS[r.status] if colour else WORDS[r.status].ljust(WORD_WIDTH)
        lines = [f"{indent}{self._paint(mark, COLOURS[r.status], colour)} {r.check.ljust(width)}  {r.message}"]
        if r.fix and r.status is not Status.OK:
            lines.append(f"{indent}{' ' * (len(mark) + 1)}fix: {r.fix}")
        return lines

    @staticmethod
    def _paint(text: str, sgr: str, colour: bool) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if colour else text
