"""Route53 on this machine: moto's server on 127.0.0.1, for the Route53 provider's tests and benchmarks.

Real HTTP with real botocore serialisation, signing and parsing, and nothing leaves the machine. The
server also serves KMS, STS and Route 53 Domains (moto dispatches on the signed service name), though
moto does not implement Route53's DNSSEC calls: tests stub those on the client.

    with MotoRoute53() as aws:
        zone_id = aws.create_zone("example.org")
        provider = make_provider(Route53(kind="route53", endpoint=aws.url), "mx1")
        aws.seen  # [(service, method, operation or path), ...] as the server received them
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from typing import Any, Self

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per request drowns test output
        pass


class _CountingServer(ThreadedMotoServer):
    """moto's threaded server with a WSGI layer in front that notes each request (never its headers)."""

    def __init__(self, seen: list[tuple[str, str, str]]):
        super().__init__("127.0.0.1", 0, verbose=False)
        self.seen = seen

    def _server_entry(self) -> None:  # ThreadedMotoServer's, with the app wrapped
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/moto-api"):
                service = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
                target = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]  # JSON APIs: the operation
                self.seen.append((service[1] if service else "?", environ["REQUEST_METHOD"], target or path))
            return moto_app(environ, start_response)

        self._server = make_server(self._ip_address, self._port, app, True, request_handler=_QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoRoute53:
    """A moto server on a free port of 127.0.0.1; `reset()` empties it between tests."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._server = _CountingServer(self.seen)
        self.url = ""

    def __enter__(self) -> Self:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every zone, key and record (moto's reset API), and the requests seen."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)
        self.seen.clear()

    def client(self, service: str = "route53") -> Any:
        """A boto3 client of this server with fake credentials of its own (the environment is not read)."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.url, **FAKE_CREDENTIALS)

    def create_zone(self, name: str, private: bool = False) -> str:
        """A hosted zone; returns its id without the /hostedzone/ prefix."""
        config: dict[str, Any] = {"PrivateZone": private}
        extra = {"VPC": {"VPCRegion": REGION, "VPCId": "vpc-12345678"}} if private else {}
        zone = self.client().create_hosted_zone(Name=name, CallerReference=str(uuid.uuid4()),
                                                HostedZoneConfig=config, **extra)
        return zone["HostedZone"]["Id"].rpartition("/")[2]

    def count(self, service: str = "route53", method: str | None = None) -> int:
        """Requests the server received for `service` (and HTTP method: route53 reads are GETs)."""
        return sum(1 for s, m, _ in self.seen if s == service and method in (None, m))
