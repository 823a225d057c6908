"""Conversations with the host's mail services, the one place that speaks their protocols: SMTP (with AUTH and
a message, for the probe), IMAP (with login and fetch), POP3, ManageSieve and HTTPS (the MTA-STS policy), each reaching TLS the way its
port does (implicit, or STARTTLS). The TLS checks, the SMTP policy checks and the mail probe all talk through
here, and a failure anywhere becomes the same kind of Result (`SessionFailure.result`).

A sending server or a mail client connects to the host's address but checks the certificate against the
host *name*, so every session takes both: `address` to connect to, `hostname` for SNI and the name check.
"""

from __future__ import annotations

import ssl

from .base import (HANDSHAKE, HELO_NAME, Mode, ProtocolError, Reply, Session, SessionFailure, StartTLSNotOffered,
                   describe, unverified_context, verify_fix, verifying_context)
from .https import HttpsSession, Response
from .imap import ImapSession
from .managesieve import SieveSession
from .pop3 import Pop3Session
from .smtp import SmtpSession

SESSIONS: dict[str, type[Session]] = {
    "smtp": SmtpSession, "imap": ImapSession, "pop3": Pop3Session, "managesieve": SieveSession,
    "https": HttpsSession,
}


def open_session(address: str, port: int, mode: Mode | str, hostname: str, context: ssl.SSLContext | None = None,
                 timeout: float = 10.0, *, handshake_only: bool = False) -> Session:
    """Connect and greet; with a `context`, reach TLS the way `mode` says (implicit, or STARTTLS).

    Without a context a STARTTLS mode stays in clear text (for looking at what is offered before TLS).
    `handshake_only` stops right after the handshake: enough to look at the certificate or the version.
    Raises SessionFailure; use the session as a context manager so it ends politely."""
    mode = Mode(mode)
    if mode.implicit and context is None:
        raise ValueError(f"{mode.value} needs a TLS context")
    session = SESSIONS[mode.protocol](address, port, hostname, timeout)
    try:
        if mode.implicit:
            session.upgrade(context)
            if not handshake_only:
                session.hello()
        else:
            session.hello()
            if context is not None:
                session.starttls(context)
                if not handshake_only:
                    session.after_tls()
    except BaseException:
        session.close()
        raise
    return session


__all__ = ["HANDSHAKE", "HELO_NAME", "HttpsSession", "ImapSession", "Mode", "Pop3Session", "ProtocolError", "Reply", "Response", "Session",
           "SessionFailure", "SieveSession", "SmtpSession", "StartTLSNotOffered", "describe", "open_session",
           "unverified_context", "verify_fix", "verifying_context"]
