"""What a check says: one `Result` per thing looked at, grouped for people, stable for machines.

A check function returns (or yields) Results; it never raises for a failure of the thing checked
(a wrong record, a refused connection, a timeout): those are results. A timeout is its own status,
never a pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"
    TIMEOUT = "timeout"  # the question could not be answered in time: counts as an error, says so

    @property
    def failed(self) -> bool:
        return self in (Status.ERROR, Status.TIMEOUT)


@dataclass(frozen=True)
class Result:
    check: str  # stable id, e.g. "dns.spf", "tls.smtp-starttls", "host.services"
    subject: str  # what was looked at: a domain, "mail.example.org:465", the host name
    status: Status
    message: str  # one line: what was found
    fix: str = ""  # on failure: what to do

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def ok(check: str, subject: str, message: str) -> Result:
    return Result(check, subject, Status.OK, message)


def warn(check: str, subject: str, message: str, fix: str = "") -> Result:
    return Result(check, subject, Status.WARN, message, fix)


def error(check: str, subject: str, message: str, fix: str = "") -> Result:
    return Result(check, subject, Status.ERROR, message, fix)


def timeout(check: str, subject: str, what: str) -> Result:
    return Result(check, subject, Status.TIMEOUT, f"no answer in time: {what}",
                  "check that the server is reachable from here, then run verify again")
