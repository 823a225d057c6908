"""The sessions the mail probe talks through: SMTP AUTH and a message (against aiosmtpd), IMAP login, search,
fetch of a literal and delete (against a scripted IMAP server), and no secret in what a failure says."""

from __future__ import annotations

import base64
import email.policy
import socket
import threading
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import AuthResult

from mailhost.verify.sessions import Mode, SessionFailure, open_session, verifying_context
from test_verify_tls import HOST, LOCAL, Handler

PASSWORD = "s3cret \"quoted\" pässword"


class Accepting(Handler):
    """Takes one message and keeps it."""

    def __init__(self):
        super().__init__()
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.original_content))
        return "250 OK queued"


def _only(user: str):
    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        good = mechanism == "PLAIN" and auth_data.login == user.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=good, handled=False)  # handled=False: aiosmtpd answers 535 itself
    return authenticate


def test_smtp_login_and_message_with_dot_stuffing(smtp_server, pki):
    handler = Accepting()
    port, _ = smtp_server(handler=handler, authenticator=_only("a@example.org"))
    msg = EmailMessage()
    msg["From"] = msg["To"] = "a@example.org"
    msg["Subject"] = "probe"
    msg.set_content("first\n.a line starting with a dot\n")
    with open_session(LOCAL, port, Mode.SMTP_STARTTLS, HOST, verifying_context(pki.ca_file)) as smtp:
        smtp.login("a@example.org", PASSWORD)
        smtp.send_message("a@example.org", ["b@example.org"], msg.as_bytes(policy=email.policy.SMTP))
    [(sender, rcpts, content)] = handler.received
    assert (sender, rcpts) == ("a@example.org", ["b@example.org"])
    assert b"\r\n.a line starting with a dot\r\n" in content  # unstuffed again by the server: sent stuffed


def test_a_refused_login_fails_without_the_password_in_the_message(smtp_server, pki):
    port, _ = smtp_server(authenticator=_only("someone-else@example.org"))
    with open_session(LOCAL, port, Mode.SMTP_STARTTLS, HOST, verifying_context(pki.ca_file)) as smtp:
        with pytest.raises(SessionFailure) as failure:
            smtp.login("a@example.org", PASSWORD)
    assert failure.value.step == "AUTH" and "535" in str(failure.value)
    token = base64.b64encode(f"\0a@example.org\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in str(failure.value) and token not in str(failure.value)


MESSAGE = b"Subject: probe 1\r\n\r\nbody with a ) and {5}\r\n"


def _imap_server(seen: list[str]) -> int:
    """One connection of a scripted IMAP server, plain text: what the probe's session needs."""
    listener = socket.create_server((LOCAL, 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n")
            for raw in lines:
                tag, command = raw.decode().rstrip("\r\n").split(" ", 1)
                seen.append(command)
                if command.startswith("AUTHENTICATE PLAIN "):
                    ok = base64.b64decode(command.split()[2]) == f"\0a@example.org\0{PASSWORD}".encode()
                    conn.sendall(f"{tag} {'OK' if ok else 'NO [AUTHENTICATIONFAILED]'} done\r\n".encode())
                elif command.startswith("SELECT"):
                    conn.sendall(f"* 2 EXISTS\r\n{tag} OK [READ-WRITE] selected\r\n".encode())
                elif command.startswith("UID SEARCH"):
                    conn.sendall(f"* SEARCH 7 9\r\n{tag} OK searched\r\n".encode())
                elif command.startswith("UID FETCH 9"):
                    conn.sendall(f"* 2 FETCH (UID 9 BODY[] {{{len(MESSAGE)}}}\r\n".encode() + MESSAGE
                                 + f")\r\n{tag} OK fetched\r\n".encode())
                elif command.startswith(("UID STORE", "EXPUNGE")):
                    conn.sendall(f"{tag} OK\r\n".encode())
                elif command == "LOGOUT":
                    conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                    return
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_imap_login_search_fetch_and_delete():
    seen: list[str] = []
    port = _imap_server(seen)
    with open_session(LOCAL, port, Mode.IMAP_STARTTLS, HOST, None) as imap:  # no context: stays in clear here
        imap.login("a@example.org", PASSWORD)
        found = imap.search_subject("INBOX", "probe 1")
        assert found == ["7", "9"]
        assert imap.fetch(found[-1]) == MESSAGE  # the literal, byte for byte, whatever it contains
        imap.delete(found)
    assert seen[-3:] == ["UID STORE 7,9 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "LOGOUT"]


def test_imap_refused_login_is_a_session_failure():
    port = _imap_server([])
    with open_session(LOCAL, port, Mode.IMAP_STARTTLS, HOST, None) as imap:
        with pytest.raises(SessionFailure) as failure:
            imap.login("a@example.org", "wrong")
    assert failure.value.step == "AUTHENTICATE" and "AUTHENTICATIONFAILED" in str(failure.value)
