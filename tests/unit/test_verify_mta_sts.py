"""MTA-STS and client autoconfig as senders and mail clients see them (mailhost.verify.checks.mta_sts), with
the DNS a dict and the HTTPS fetch replaced; and the HTTPS session itself against a TLS server on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailhost import web
from mailhost.spec import parse_spec
from mailhost.verify.checks import mta_sts
from mailhost.verify.checks.lookup import LookupTimeout, despite_caches
from mailhost.verify.checks.mta_sts import check_autoconfig, check_mta_sts, covers, parse_policy
from mailhost.verify.result import Status
from mailhost.verify.sessions import Mode, ProtocolError, Response, SessionFailure, open_session, verifying_context
from mailhost.verify.sessions.https import MAX_RESPONSE
from test_verify_tls import HOST, LOCAL, _certificate

HASH = "{SHA512-CRYPT}$6$x$y"
DOMAIN = "example.org"
ADDRESS = "192.0.2.25"
CA_FILE = "/tmp/ca.pem"  # only handed on to `fetch`
SPEC = parse_spec({"hostname": HOST, "domains": [{"name": DOMAIN}],
                   "mailboxes": [{"address": f"alice@{DOMAIN}", "password_hash": HASH}]})
POLICY = web.policy(SPEC)  # what the host serves: enforce, mx mail.example.org


def policy_text(mode: str = "enforce", mx: tuple[str, ...] = (HOST,), max_age: str = "604800") -> str:
    return "".join(f"{line}\r\n" for line in ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx),
                                               f"max_age: {max_age}"])


def lookup_from(records: dict[tuple[str, str], list[str] | Exception]):
    """A `Lookup` over a dict: a name without records is an empty list; an exception value is raised."""
    def lookup(name: str, rdtype: str) -> list[str]:
        found = records.get((name, rdtype), [])
        if isinstance(found, Exception):
            raise found
        return found
    return lookup


def sts_record(text: str = POLICY) -> dict:
    return {(f"_mta-sts.{DOMAIN}", "TXT"): [f"v=STSv1; id={web.policy_id(text)}"]}


@pytest.fixture
def serve(monkeypatch):
    """Replace the HTTPS fetch: `serve(response or exception)`; returns the calls made."""
    calls: list[tuple] = []

    def install(answer: Response | Exception):
        def fetch(address, name, path, ca_file, connect_timeout=10.0):
            calls.append((address, name, path, ca_file))
            if isinstance(answer, Exception):
                raise answer
            return answer
        monkeypatch.setattr(mta_sts, "fetch", fetch)
        return calls
    return install


def text_plain(body: str | bytes, status: int = 200, kind: str = "text/plain") -> Response:
    return Response(status, {"content-type": kind}, body.encode() if isinstance(body, str) else body)


def by_check(results) -> dict:
    results = list(results)
    checks = [r.check for r in results]
    assert len(checks) == len(set(checks)), results
    return {r.check: r for r in results}


def sts(lookup_records: dict, mode: str = "enforce") -> dict:
    return by_check(check_mta_sts(DOMAIN, HOST, mode, ADDRESS, lookup_from(lookup_records), CA_FILE))


# -- parsing the policy, matching the MX -------------------------------------------------------------------
def test_parse_policy_reads_crlf_or_lf_lines_and_repeated_mx():
    assert parse_policy(POLICY) == {"version": ["STSv1"], "mode": ["enforce"], "mx": [HOST], "max_age": ["604800"]}
    lf = "version: STSv1\nmode: testing\nmx: a.example.org\nmx:*.example.net \nmax_age:86400\n"
    assert parse_policy(lf) == {"version": ["STSv1"], "mode": ["testing"], "mx": ["a.example.org", "*.example.net"],
                                "max_age": ["86400"]}
    assert parse_policy("no colon here\r\n\r\n") == {}


@pytest.mark.parametrize("patterns, hostname, covered", [
    (["mail.example.org"], "mail.example.org", True),
    (["MAIL.Example.ORG"], "mail.example.org", True),
    (["mail.example.org"], "Mail.Example.Org", True),
    (["other.example.org", "mail.example.org"], "mail.example.org", True),
    (["*.example.org"], "mail.example.org", True),
    (["*.EXAMPLE.org"], "mail.example.org", True),
    (["*.example.org"], "MAIL.EXAMPLE.ORG", True),
    (["*.example.org"], "a.mail.example.org", False),  # the wildcard is one leftmost label only
    (["*.example.org"], "example.org", False),
    (["*.mail.example.org"], "mail.example.org", False),
    (["*.*"], "mail.example.org", False),  # only a leading "*." is a wildcard
    (["*.*.org"], "mail.example.org", False),
    (["mail.*.org"], "mail.example.org", False),
    (["mail.example.org"], "mail.example.org.evil.example", False),
    (["other.example.org"], "mail.example.org", False),
    ([], "mail.example.org", False),
])
def test_covers(patterns, hostname, covered):
    assert covers(patterns, hostname) is covered


# -- check_mta_sts -----------------------------------------------------------------------------------------
def test_the_policy_the_host_serves_passes(serve):
    calls = serve(text_plain(POLICY))
    results = sts(sts_record())
    assert {c: r.status for c, r in results.items()} == {
        "mta-sts.record": Status.OK, "mta-sts.policy": Status.OK, "mta-sts.id": Status.OK}
    assert calls == [(ADDRESS, f"mta-sts.{DOMAIN}", "/.well-known/mta-sts.txt", CA_FILE)]
    assert all(r.subject == DOMAIN for r in results.values())
    assert "mode enforce" in results["mta-sts.policy"].message


def test_a_content_type_with_parameters_and_lf_lines_pass(serve):
    text = policy_text().replace("\r\n", "\n")
    serve(text_plain(text, kind="text/plain; charset=utf-8"))
    assert {r.status for r in sts(sts_record(text)).values()} == {Status.OK}


def test_a_wildcard_mx_covering_the_host_passes(serve):
    text = policy_text(mx=("backup.example.net", "*.example.org"))
    serve(text_plain(text))
    assert sts(sts_record(text))["mta-sts.policy"].status is Status.OK


def test_a_mode_other_than_the_specs_is_an_error(serve):
    text = policy_text(mode="testing")
    serve(text_plain(text))
    results = sts(sts_record(text))  # the record's id is the served policy's: only the mode is wrong
    assert results["mta-sts.policy"].status is Status.ERROR
    assert "mode ['testing'] where the spec says enforce" in results["mta-sts.policy"].message
    assert results["mta-sts.id"].status is Status.OK
    assert sts(sts_record(text), mode="testing")["mta-sts.policy"].status is Status.OK


def test_an_mx_that_does_not_cover_the_host_is_an_error(serve):
    text = policy_text(mx=("mx.elsewhere.example", "*.mail.example.org"))
    serve(text_plain(text))
    policy = sts(sts_record(text))["mta-sts.policy"]
    assert policy.status is Status.ERROR and f"does not cover {HOST}" in policy.message
    assert "mx.elsewhere.example" in policy.message


@pytest.mark.parametrize("max_age", ["", "-1", "1w", "31557601"])
def test_a_bad_max_age_is_an_error(serve, max_age):
    text = policy_text(max_age=max_age)
    serve(text_plain(text))
    policy = sts(sts_record(text))["mta-sts.policy"]
    assert policy.status is Status.ERROR and "max_age" in policy.message


def test_a_stale_id_is_an_error_naming_the_served_policys_id(serve):
    serve(text_plain(POLICY))
    results = sts({(f"_mta-sts.{DOMAIN}", "TXT"): ["v=STSv1; id=20240101000000"]})
    assert results["mta-sts.record"].status is Status.OK and results["mta-sts.policy"].status is Status.OK
    stale = results["mta-sts.id"]
    right = web.policy_id(POLICY)
    assert stale.status is Status.ERROR
    assert f"id 20240101000000 is not the served policy's ({right})" in stale.message
    assert f'"v=STSv1; id={right}"' in stale.fix and f"_mta-sts.{DOMAIN}." in stale.fix


@pytest.mark.parametrize("records, message", [
    ({}, f"no MTA-STS record at _mta-sts.{DOMAIN}"),
    ({(f"_mta-sts.{DOMAIN}", "TXT"): ["v=spf1 -all", "something else"]}, "no MTA-STS record"),
    ({(f"_mta-sts.{DOMAIN}", "TXT"): ["v=STSv1; id=1", "v=STSv1; id=2"]}, "2 MTA-STS records"),
    ({(f"_mta-sts.{DOMAIN}", "TXT"): ["v=STSv1; id=not-alnum!"]}, "1 MTA-STS records"),
    ({(f"_mta-sts.{DOMAIN}", "TXT"): [f"v=STSv1; id={web.policy_id(POLICY)}-x"]}, "1 MTA-STS records"),
    ({(f"_mta-sts.{DOMAIN}", "TXT"): ["v=STSv1; id=" + "a" * 33]}, "1 MTA-STS records"),  # at most 32
], ids=["none", "others only", "two", "malformed", "no delimiter", "too long"])
def test_a_missing_or_unusable_record_is_an_error_and_nothing_is_fetched(serve, records, message):
    calls = serve(text_plain(POLICY))
    results = sts(records)
    assert list(results) == ["mta-sts.record"]
    assert results["mta-sts.record"].status is Status.ERROR and message in results["mta-sts.record"].message
    assert calls == []


def test_a_record_with_an_extension_field_passes(serve):
    serve(text_plain(POLICY))
    record = {(f"_mta-sts.{DOMAIN}", "TXT"): [f"v=STSv1; id={web.policy_id(POLICY)} ; ext=1;"]}
    assert {r.status for r in sts(record).values()} == {Status.OK}


def test_no_dns_answer_is_a_timeout(serve):
    calls = serve(text_plain(POLICY))
    results = sts({(f"_mta-sts.{DOMAIN}", "TXT"): LookupTimeout("SERVFAIL")})
    assert {c: r.status for c, r in results.items()} == {"mta-sts.record": Status.TIMEOUT} and calls == []


@pytest.mark.parametrize("response, shown", [
    (text_plain("<html>not here</html>", 404, "text/html"), "answered 404 (text/html)"),
    (text_plain(POLICY, 301, ""), "answered 301 (no content type)"),
    (text_plain(POLICY, 200, "text/html"), "answered 200 (text/html)"),
], ids=["404", "redirect", "html"])
def test_anything_but_200_text_plain_is_an_error(serve, response, shown):
    serve(response)
    results = sts(sts_record())
    assert results["mta-sts.policy"].status is Status.ERROR and shown in results["mta-sts.policy"].message
    assert "mta-sts.id" not in results  # no policy: nothing to compare the id with


@pytest.mark.parametrize("failure, status, shown", [
    (SessionFailure("connect to 192.0.2.25:443", ConnectionRefusedError(111, "Connection refused")), Status.ERROR,
     "port closed or filtered"),
    (SessionFailure("TLS handshake", TimeoutError("timed out")), Status.TIMEOUT, "TLS handshake"),
    (SessionFailure("GET /.well-known/mta-sts.txt", ProtocolError("an answer over 65536 bytes")), Status.ERROR,
     "unexpected answer to GET /.well-known/mta-sts.txt: an answer over 65536 bytes"),
], ids=["refused", "timeout", "too big"])
def test_a_failed_fetch_is_a_failed_result(serve, failure, status, shown):
    serve(failure)
    results = sts(sts_record())
    assert list(results) == ["mta-sts.record", "mta-sts.policy"]
    assert results["mta-sts.policy"].status is status and shown in results["mta-sts.policy"].message


# -- check_autoconfig --------------------------------------------------------------------------------------
SRV = {(f"_submissions._tcp.{DOMAIN}", "SRV"): [f"0 1 465 {HOST}."],
       (f"_imaps._tcp.{DOMAIN}", "SRV"): [f"0 1 993 {HOST}."]}


def autoconfig(records: dict = SRV) -> dict:
    return by_check(check_autoconfig(DOMAIN, HOST, ADDRESS, lookup_from(records), CA_FILE))


def test_the_autoconfig_file_the_host_serves_passes(serve):
    calls = serve(Response(200, {"content-type": "application/xml"}, web.autoconfig(SPEC).encode()))
    results = autoconfig()
    assert {c: r.status for c, r in results.items()} == {"autoconfig.srv": Status.OK, "autoconfig.file": Status.OK}
    assert calls == [(ADDRESS, f"autoconfig.{DOMAIN}", "/mail/config-v1.1.xml", CA_FILE)]


@pytest.mark.parametrize("label, value", [
    ("_imaps._tcp", "0 1 993 imap.elsewhere.example."),
    ("_imaps._tcp", None),
    ("_submissions._tcp", "0 0 0 ."),
    ("_submissions._tcp", f"0 1 1465 {HOST}."),  # the host, but another port
    ("_imaps._tcp", f"0 1 993 x{HOST}."),
], ids=["elsewhere", "missing", "not offered", "other port", "other host"])
def test_srv_records_not_pointing_at_the_host_are_an_error(serve, label, value):
    serve(Response(200, {}, web.autoconfig(SPEC).encode()))
    records = {**SRV, (f"{label}.{DOMAIN}", "SRV"): [value] if value else []}
    results = autoconfig(records)
    srv = results["autoconfig.srv"]
    assert srv.status is Status.ERROR and f"{label}.{DOMAIN} ({value or 'none'})" in srv.message
    assert results["autoconfig.file"].status is Status.OK  # the file is judged on its own


def test_no_srv_answer_is_a_timeout(serve):
    calls = serve(Response(200, {}, web.autoconfig(SPEC).encode()))
    results = autoconfig({**SRV, (f"_imaps._tcp.{DOMAIN}", "SRV"): LookupTimeout("no answer")})
    assert {c: r.status for c, r in results.items()} == {"autoconfig.srv": Status.TIMEOUT} and calls == []


@pytest.mark.parametrize("body, status, shown", [
    (b"<clientConfig><emailProvider>", 200, "not XML"),
    (b"", 200, "not XML"),
    (web.autoconfig(SPEC).replace("993", "143").replace("<socketType>SSL</socketType>\n      <username>%EMAILADDRESS%"
                                                        "</username>\n      <authentication>password-cleartext"
                                                        "</authentication>\n    </incomingServer>",
                                                        "<socketType>STARTTLS</socketType>\n    </incomingServer>")
     .encode(), 200, "('imap', 'mail.example.org', '143', 'STARTTLS')"),
    (web.autoconfig(SPEC).replace(HOST, "mail.elsewhere.example").encode(), 200, "mail.elsewhere.example"),
    (web.autoconfig(SPEC).encode(), 404, "404"),
], ids=["malformed", "empty", "imap starttls", "another host", "404"])
def test_a_wrong_autoconfig_file_is_an_error(serve, body, status, shown):
    serve(Response(status, {}, body))
    results = autoconfig()
    assert results["autoconfig.srv"].status is Status.OK
    assert results["autoconfig.file"].status is Status.ERROR and shown in results["autoconfig.file"].message


def test_a_failed_autoconfig_fetch_is_a_failed_result(serve):
    serve(SessionFailure("TLS handshake", ssl.SSLError(1, "[SSL: TLSV1_ALERT_INTERNAL_ERROR] internal error")))
    result = autoconfig()["autoconfig.file"]
    assert result.status is Status.ERROR and "TLS handshake failed" in result.message


@pytest.mark.parametrize("stale, judge, served", [
    ({**SRV, (f"_imaps._tcp.{DOMAIN}", "SRV"): ["0 1 993 imap.elsewhere.example."]},
     lambda lk: check_autoconfig(DOMAIN, HOST, ADDRESS, lk, CA_FILE), Response(200, {}, web.autoconfig(SPEC).encode())),
    (sts_record("an older policy"),
     lambda lk: check_mta_sts(DOMAIN, HOST, "enforce", ADDRESS, lk, CA_FILE), text_plain(POLICY)),
], ids=["SRV", "MTA-STS id"])
def test_a_record_the_resolver_still_caches_is_a_warning_once_published(serve, stale, judge, served):
    """As verify judges them (`despite_caches`): the resolver's stale answer fails, the authoritative servers
    already pass: a warning; the file or policy served over HTTPS is judged as it is."""
    fresh = {**SRV, **sts_record()}
    calls = serve(served)
    results = by_check(despite_caches(judge, lookup_from(stale), lookup_from(fresh)))
    assert {r.status for r in results.values()} == {Status.OK, Status.WARN}, results
    assert "cached" in next(r.message for r in results.values() if r.status is Status.WARN)
    assert by_check(despite_caches(judge, lookup_from(stale), lookup_from(stale))).keys() == results.keys()
    assert Status.ERROR in {r.status for r in despite_caches(judge, lookup_from(stale), lookup_from(stale))}
    assert calls


# -- the HTTPS session against a local TLS server ----------------------------------------------------------
class HttpsServer:
    """Answers each connection's request with `answer` over TLS, then closes; keeps the requests it read."""

    def __init__(self, context: ssl.SSLContext, answer: bytes):
        self.context, self.answer = context, answer
        self.requests: list[bytes] = []
        self.listener = socket.create_server((LOCAL, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request and (data := tls.recv(4096)):
                    request += data
                self.requests.append(request)
                tls.sendall(self.answer)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def https_server(pki, tmp_path):
    """Factory: an HTTPS server on 127.0.0.1 giving `answer`, its certificate from the test CA for `names`."""
    started = []

    def start(answer: bytes, names: tuple[str, ...] = (HOST,)) -> HttpsServer:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(names[0], list(names), key, pki.cas["ca"], (-1, 90))
        pem = tmp_path / f"https-{len(started)}.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pem))
        server = HttpsServer(context, answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_https_get_returns_status_lowercase_headers_and_body(pki, https_server):
    body = POLICY.encode()
    server = https_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Mixed-CASE:  Value Kept \r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    with open_session(LOCAL, server.port, Mode.HTTPS_TLS, HOST, verifying_context(pki.ca_file)) as session:
        assert session.tls_version in ("TLSv1.2", "TLSv1.3")
        response = session.get("/.well-known/mta-sts.txt")
    assert response == Response(200, {"content-type": "text/plain", "x-mixed-case": "Value Kept",
                                      "content-length": str(len(body)), "connection": "close"}, body)
    [request] = server.requests
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /.well-known/mta-sts.txt HTTP/1.1" and f"Host: {HOST}" in lines


def test_https_status_other_than_200_is_returned_not_raised(pki, https_server):
    server = https_server(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<html>gone</html>")
    with open_session(LOCAL, server.port, "https-tls", HOST, verifying_context(pki.ca_file)) as session:
        assert session.get("/mail/config-v1.1.xml") == Response(404, {"content-type": "text/html"},
                                                                b"<html>gone</html>")


def test_an_answer_over_64_kib_fails_as_a_protocol_error(pki, https_server):
    server = https_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (MAX_RESPONSE + 1))
    with open_session(LOCAL, server.port, Mode.HTTPS_TLS, HOST, verifying_context(pki.ca_file)) as session:
        with pytest.raises(SessionFailure) as failure:
            session.get("/.well-known/mta-sts.txt")
    assert isinstance(failure.value.cause, ProtocolError) and failure.value.step == "GET /.well-known/mta-sts.txt"
    result = failure.value.result("mta-sts.policy", DOMAIN)
    assert result.status is Status.ERROR and f"over {MAX_RESPONSE} bytes" in result.message


def test_an_answer_that_is_not_http_fails_as_a_protocol_error(pki, https_server):
    server = https_server(b"* OK IMAP4rev1 ready\r\n")
    with open_session(LOCAL, server.port, Mode.HTTPS_TLS, HOST, verifying_context(pki.ca_file)) as session:
        with pytest.raises(SessionFailure) as failure:
            session.get("/mail/config-v1.1.xml")
    assert isinstance(failure.value.cause, ProtocolError) and "not an HTTP answer" in str(failure.value)


def test_the_certificate_must_name_the_host_asked_for(pki, https_server):
    server = https_server(b"HTTP/1.1 200 OK\r\n\r\n")  # a certificate for mail.example.org only
    with pytest.raises(SessionFailure) as failure:
        open_session(LOCAL, server.port, Mode.HTTPS_TLS, f"mta-sts.{DOMAIN}", verifying_context(pki.ca_file))
    result = failure.value.result("mta-sts.policy", DOMAIN)
    assert result.status is Status.ERROR and "certificate not accepted" in result.message


def test_check_mta_sts_over_https_end_to_end(pki, https_server, monkeypatch):
    """The real fetch, through a server whose certificate names mta-sts.<domain> (port 443 redirected to it)."""
    server = https_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + POLICY.encode(),
                          names=(f"mta-sts.{DOMAIN}", f"autoconfig.{DOMAIN}"))
    opened = []

    def local(address, port, *args, **kwargs):
        opened.append((address, port, args[:2]))
        return open_session(LOCAL, server.port, *args, **kwargs)
    monkeypatch.setattr(mta_sts, "open_session", local)
    results = by_check(check_mta_sts(DOMAIN, HOST, "enforce", ADDRESS, lookup_from(sts_record()), pki.ca_file))
    assert {r.status for r in results.values()} == {Status.OK}, results
    assert opened == [(ADDRESS, 443, (Mode.HTTPS_TLS, f"mta-sts.{DOMAIN}"))]
    [request] = server.requests
    assert f"Host: mta-sts.{DOMAIN}\r\n".encode() in request


# What `postmap -q example.org socketmap:...` said on lab hosts (Debian 13 and 12), and its exit status.
REFUSED = ("postmap: warning: connect to 127.0.0.1:8461: Connection refused\n"
           "postmap: warning: table socketmap:inet:127.0.0.1:8461:postfix lookup error: Connection refused\n"
           "postmap: fatal: table socketmap:inet:127.0.0.1:8461:postfix: query error: Connection refused\n")


@pytest.mark.parametrize("said, status, expected", [
    ("secure match=mail.example.org servername=hostname\n", 0, "example.org -> 'secure match=mail.example.org"),
    ("", 1, "example.org has no policy"),
    (REFUSED, 1, "does not answer ('fatal: table socketmap:inet:127.0.0.1:8461:postfix: query error: Connection "
                 "refused')"),
    ("", 124, "does not answer (no answer within 30 s)"),
])
def test_verify_asks_the_policy_map_as_postfix_does(said, status, expected):
    """The resolver starts when asked, so a map that cannot answer shows only when asked: every outbound
    message would wait."""
    from mailhost import hostinfo
    from mailhost.verify.checks.host import check_mta_sts_resolver
    asked = []

    def run(command: str) -> str:
        asked.append(command)
        return f"{said}status={status}\n"

    (result,) = check_mta_sts_resolver(run, SPEC)
    assert expected in result.message
    assert result.status is (Status.OK if status in (0, 1) and not said.startswith("postmap") else Status.ERROR)
    assert f"postmap -q example.org {hostinfo.MTA_STS_POLICY_MAP}" in asked[0]
    off = parse_spec({"hostname": HOST, "domains": [{"name": DOMAIN}], "features": {"mta_sts_outbound": False},
                      "mailboxes": [{"address": f"alice@{DOMAIN}", "password_hash": HASH}]})
    assert list(check_mta_sts_resolver(run, off)) == []
