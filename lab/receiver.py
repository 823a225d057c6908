"""The remote receiver: an SMTP server for an external domain (remote.test) on the lab network.

It accepts every message for its domain and stores it with what a receiving MTA knows
of the delivery: peer address, HELO name, envelope, and whether (and how) TLS was used.
Tests read the spool through `Spool`. On 443 it serves the domain's MTA-STS policy (as
mta-sts.remote.test) from a file a test writes (404 while there is none).

Run by the lab inside its own network namespace:
    python -m lab.receiver --listen ADDR --spool DIR --cert PEM --key PEM --domain remote.test --policy FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path


@dataclass(frozen=True)
class Delivery:
    """One stored message and its delivery metadata."""

    id: str
    peer: str
    helo: str
    mail_from: str
    rcpt_tos: list[str]
    tls: bool
    tls_version: str | None
    received_at: float
    raw: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.raw)


class Spool:
    """The receiver's spool directory: one `<id>.json` + `<id>.eml` per message."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def messages(self) -> list[Delivery]:
        out = []
        for meta in sorted(self.path.glob("*.json")):
            data = json.loads(meta.read_text())
            out.append(Delivery(raw=meta.with_suffix(".eml").read_bytes(), **data))
        return sorted(out, key=lambda d: d.received_at)

    def wait_for(self, predicate, timeout: float = 60) -> Delivery:
        """The first stored message for which `predicate(delivery)` is true; waits up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for delivery in self.messages():
                if predicate(delivery):
                    return delivery
            time.sleep(0.2)
        raise TimeoutError(f"no matching message reached the remote receiver within {timeout:.0f}s")


class _Handler:
    def __init__(self, spool: Path, domain: str):
        self.spool, self.domain = spool, domain.lower().rstrip(".")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not address.lower().endswith("@" + self.domain):
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg_id = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}"
        meta = {
            "id": msg_id, "peer": session.peer[0], "helo": session.host_name or "",
            "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
            "tls": session.ssl is not None, "tls_version": _tls_version(session), "received_at": time.time(),
        }
        data = envelope.original_content or envelope.content
        (self.spool / f"{msg_id}.eml").write_bytes(data if isinstance(data, bytes) else data.encode())
        tmp = self.spool / f".{msg_id}.json"
        tmp.write_text(json.dumps(meta))
        tmp.rename(self.spool / f"{msg_id}.json")  # readers see a message only once whole
        return "250 2.0.0 Stored"


def _tls_version(session) -> str | None:
    """aiosmtpd keeps the TLS transport's extra info in `session.ssl` after STARTTLS."""
    sslobj = (session.ssl or {}).get("ssl_object")
    return sslobj.version() if sslobj else None


POLICY_PATH = b"/.well-known/mta-sts.txt"


async def serve_policy(listen: str, context: ssl.SSLContext, policy: Path) -> asyncio.AbstractServer:
    """HTTPS on 443: the MTA-STS policy file at its well-known path, 404 for anything else."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            body = policy.read_bytes() if path == POLICY_PATH and policy.exists() else None
            status = "200 OK" if body is not None else "404 Not Found"
            body = b"not found\n" if body is None else body
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
    return await asyncio.start_server(answer, listen, 443, ssl=context)


def main() -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--policy", type=Path, required=True, help="the MTA-STS policy file served on 443")
    args = parser.parse_args()
    args.spool.mkdir(parents=True, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    class Receiver(Controller):
        def factory(self):
            return SMTP(self.handler, hostname=args.hostname, tls_context=context, require_starttls=False,
                        enable_SMTPUTF8=True, data_size_limit=50 * 1024 * 1024)

    controller = Receiver(_Handler(args.spool, args.domain), hostname=args.listen, port=args.port)
    controller.start()
    print(f"receiver for {args.domain} on {args.listen}:{args.port}", flush=True)
    async def serve() -> None:
        await serve_policy(args.listen, context, args.policy)
        await asyncio.Event().wait()
    try:
        asyncio.run(serve())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
