"""HTTPS (port 443): the MTA-STS policy and the autoconfig file, one GET per connection."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ProtocolError, Session

MAX_RESPONSE = 65536  # RFC 8461 3.3: a policy is at most 64 KiB; the autoconfig file is far smaller


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lowercase
    body: bytes


class HttpsSession(Session):
    """HTTP/1.1 over implicit TLS, as an MTA-STS sender or a mail client fetches a file: no redirects followed
    (RFC 8461 3.3 forbids them), the `hostname` as SNI, certificate name and Host header."""

    def hello(self) -> None:
        """HTTP has no greeting."""

    def goodbye(self) -> None:
        """The server closes after its answer (Connection: close)."""

    def get(self, path: str) -> Response:
        with self.step(f"GET {path}"):
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.hostname}\r\nUser-Agent: mailhost-verify\r\n"
                              "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := self.sock.recv(16384):
                data += chunk
                if len(data) > MAX_RESPONSE:
                    raise ProtocolError(f"an answer over {MAX_RESPONSE} bytes")
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            words = lines[0].split()
            if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
                raise ProtocolError(f"not an HTTP answer: {lines[0][:80]!r}")  # (a SessionFailure, as above)
        headers = {name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines[1:])}
        return Response(int(words[1]), headers, body)
