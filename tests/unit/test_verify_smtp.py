"""SMTP policy checks against real aiosmtpd servers on 127.0.0.1 (good ones and deliberately bad ones),
and the DNSBL check through a dict and through a small DNS server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import pytest

# Constants shared with the TLS tests; their fixtures come through conftest.py.
from test_verify_tls import HOST, LOCAL, SHORT, Handler

from mailhost.verify import lookup_with
from mailhost.verify.checks.lookup import LookupTimeout
from mailhost.verify.checks.smtp import (FOREIGN_RCPT, check_auth_before_tls, check_banner, check_dnsbl,
                                         check_open_relay, check_submission_requires_auth, dnsbl_name)
from mailhost.verify.sessions import Mode
from mailhost.verify.result import Status

# aiosmtpd does not count implicit TLS as TLS for AUTH, so the 465-style server runs with auth_require_tls off,
# which aiosmtpd warns about on every connection (from its own thread, past catch_warnings).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def only(results):
    [result] = results
    return result


# --- banner -------------------------------------------------------------------------------------------------

def test_banner_names_the_host(smtp_server):
    port, _ = smtp_server()
    result = only(check_banner(LOCAL, HOST, port))
    assert (result.check, result.subject, result.status) == ("smtp.banner", f"{HOST}:{port}", Status.OK)


def test_banner_over_implicit_tls(smtp_server):
    port, _ = smtp_server(implicit=True)
    assert only(check_banner(LOCAL, HOST, port, mode=Mode.SMTP_TLS)).status == Status.OK


def test_banner_naming_another_host(smtp_server):
    port, _ = smtp_server(hostname="other.example.net")
    result = only(check_banner(LOCAL, HOST, port))
    assert result.status == Status.ERROR
    assert "the greeting names 'other.example.net'" in result.message
    assert "EHLO names 'other.example.net'" in result.message and f"not {HOST}" in result.message
    assert f"myhostname = {HOST}" in result.fix


def test_banner_closed_and_silent(closed_port, silent_port):
    closed = only(check_banner(LOCAL, HOST, closed_port))
    assert closed.status == Status.ERROR and "port closed or filtered" in closed.message
    silent = only(check_banner(LOCAL, HOST, silent_port, timeout=SHORT))
    assert silent.status == Status.TIMEOUT and "greeting" in silent.message


def test_banner_waits_out_a_greet_pause():
    # postscreen's way: "220-" at once, the rest of the greeting only after a pause (3 s on our hosts), longer
    # than one step's timeout; a client that waits is greeted, one that talks first is taken for a bot.
    listener = socket.create_server((LOCAL, 0))

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(f"220-{HOST} pause\r\n".encode())
            time.sleep(SHORT * 2)
            conn.sendall(f"220 {HOST} ESMTP\r\n".encode())
            lines.readline()
            conn.sendall(f"250-{HOST}\r\n250 8BITMIME\r\n".encode())
            lines.readline()
            conn.sendall(b"221 bye\r\n")
    threading.Thread(target=serve, daemon=True).start()
    with listener:
        result = only(check_banner(LOCAL, HOST, listener.getsockname()[1], timeout=SHORT))
    assert result.status == Status.OK, result


# --- open relay ---------------------------------------------------------------------------------------------

def test_closed_relay_requiring_starttls(pki, smtp_server):
    port, handler = smtp_server()
    clear, after_tls = check_open_relay(LOCAL, HOST, pki.ca_file, port=port)
    assert (clear.status, after_tls.status) == (Status.OK, Status.OK), (clear, after_tls)
    assert clear.message.startswith("in clear: takes no mail before TLS") and "530" in clear.message
    assert after_tls.message.startswith("after STARTTLS: relaying to") and "554 5.7.1" in after_tls.message
    assert handler.data == 0


def test_closed_relay_in_clear_too(smtp_server):
    port, _ = smtp_server(require_starttls=False)
    results = check_open_relay(LOCAL, HOST, port=port)
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert all("relaying to relay-test@example.invalid refused" in r.message for r in results)


def test_open_relay(smtp_server):
    port, handler = smtp_server(require_starttls=False, handler=Handler(relay=True))
    results = check_open_relay(LOCAL, HOST, port=port)
    assert [(r.check, r.status) for r in results] == [("smtp.relay", Status.ERROR)] * 2
    assert "open relay in clear" in results[0].message and f"<{FOREIGN_RCPT}>" in results[0].message
    assert "reject_unauth_destination" in results[0].fix
    assert handler.data == 0  # never DATA, even when the server would take it


@pytest.mark.parametrize("handler,status,words", [
    (Handler(rcpt_reply="450 4.7.1 try later"), Status.WARN, "RCPT TO only deferred"),
    (Handler(mail_reply="553 5.1.8 sender domain unknown"), Status.WARN, "so relaying was not tried"),
])
def test_relay_not_proven_either_way(smtp_server, handler, status, words):
    port, _ = smtp_server(require_starttls=False, handler=handler)
    results = check_open_relay(LOCAL, HOST, port=port)
    assert [r.status for r in results] == [status, status] and words in results[0].message


def test_relay_probe_over_tls_when_starttls_is_missing(smtp_server):
    port, _ = smtp_server(cert=None)
    clear, after_tls = check_open_relay(LOCAL, HOST, port=port)
    assert clear.status == Status.OK
    assert after_tls.status == Status.ERROR and after_tls.message.startswith("after STARTTLS: STARTTLS not offered")


def test_relay_silent_server_times_out(silent_port):
    results = check_open_relay(LOCAL, HOST, port=silent_port, timeout=SHORT)
    assert [r.status for r in results] == [Status.TIMEOUT] * 2


# --- AUTH before TLS ----------------------------------------------------------------------------------------

def test_auth_only_after_tls_on_submission(smtp_server):
    port, _ = smtp_server()
    result = only(check_auth_before_tls(LOCAL, HOST, port, mx=False))
    assert (result.check, result.status) == ("smtp.auth-before-tls", Status.OK)


def test_auth_before_tls(smtp_server):
    port, _ = smtp_server(auth_require_tls=False)
    for mx in (False, True):
        result = only(check_auth_before_tls(LOCAL, HOST, port, mx=mx))
        assert result.status == Status.ERROR and "offers AUTH" in result.message
        assert "before STARTTLS" in result.message
    assert "smtpd_tls_auth_only" in only(check_auth_before_tls(LOCAL, HOST, port, mx=False)).fix


def test_no_auth_at_all_on_the_mx_port(smtp_server):
    """AUTH after STARTTLS is right for submission and wrong on 25: other servers never log in."""
    port, _ = smtp_server()
    result = only(check_auth_before_tls(LOCAL, HOST, port, mx=True))
    assert result.status == Status.ERROR and "after STARTTLS on the MX port" in result.message
    assert "smtpd_sasl_auth_enable = no" in result.fix

    port, _ = smtp_server(handler=Handler(offer_auth=False))
    assert only(check_auth_before_tls(LOCAL, HOST, port, mx=True)).status == Status.OK
    port, _ = smtp_server(cert=None, handler=Handler(offer_auth=False))
    result = only(check_auth_before_tls(LOCAL, HOST, port, mx=True))
    assert result.status == Status.OK and "no STARTTLS" in result.message


def test_port_25_is_the_mx_port_by_default(closed_port):
    # Nothing listens: only the port's meaning is looked at (the fix names the MX setting).
    result = only(check_auth_before_tls(LOCAL, HOST, closed_port))
    assert result.status == Status.ERROR and "port closed" in result.message


# --- submission ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("implicit", [False, True], ids=["587-starttls", "465-implicit"])
def test_submission_requires_auth(pki, smtp_server, implicit):
    port, handler = smtp_server(implicit=implicit, auth_required=True)
    mode = Mode.SMTP_TLS if implicit else Mode.SMTP_STARTTLS
    result = only(check_submission_requires_auth(LOCAL, HOST, pki.ca_file, port, mode=mode))
    assert (result.check, result.status) == ("smtp.submission-auth", Status.OK), result
    assert "offers AUTH LOGIN PLAIN" in result.message and "530" in result.message
    assert handler.data == 0


def test_submission_without_auth_accepted(smtp_server):
    port, _ = smtp_server(handler=Handler(relay=True))
    result = only(check_submission_requires_auth(LOCAL, HOST, port=port))
    assert result.status == Status.ERROR and "without login" in result.message and "open relay" in result.message
    assert "permit_sasl_authenticated,reject" in result.fix


def test_submission_without_auth_offered(smtp_server):
    port, _ = smtp_server(handler=Handler(offer_auth=False), auth_required=True)
    result = only(check_submission_requires_auth(LOCAL, HOST, port=port))
    assert result.status == Status.ERROR and "no AUTH offered after TLS" in result.message


def test_submission_deferring_mail_without_login(smtp_server):
    port, _ = smtp_server(handler=Handler(rcpt_reply="451 4.3.0 try later"))
    result = only(check_submission_requires_auth(LOCAL, HOST, port=port))
    assert result.status == Status.WARN and "only deferred at RCPT TO" in result.message


def test_smtp_checks_speak_smtp_only():
    with pytest.raises(ValueError):
        check_banner(LOCAL, HOST, 993, mode=Mode.IMAP_TLS)


def test_submission_without_starttls(smtp_server):
    port, _ = smtp_server(cert=None)
    result = only(check_submission_requires_auth(LOCAL, HOST, port=port))
    assert result.status == Status.ERROR and "STARTTLS not offered" in result.message


# --- DNSBL --------------------------------------------------------------------------------------------------

def dict_lookup(records: dict):
    """A `Lookup` answering from {(name, rdtype): values or an exception to raise}; [] otherwise."""
    def lookup(name: str, rdtype: str) -> list[str]:
        value = records.get((name, rdtype), [])
        if isinstance(value, Exception):
            raise value
        return value
    return lookup


def test_dnsbl_names():
    assert dnsbl_name("192.0.2.10", "zen.example.") == "10.2.0.192.zen.example"
    assert dnsbl_name("2001:db8::1", "bl.example") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.bl.example"


def test_dnsbl_listed_not_listed_timeout():
    lookup = dict_lookup({
        ("10.2.0.192.bl.example", "A"): ["127.0.0.2"],
        ("10.2.0.192.bl.example", "TXT"): ["listed: see https://bl.example/10"],
        ("11.2.0.192.slow.example", "A"): LookupTimeout("11.2.0.192.slow.example A"),
    })
    listed, clean, slow = check_dnsbl(["192.0.2.10", "192.0.2.12", "192.0.2.11"], ["bl.example", "slow.example"],
                                      lookup)
    assert (listed.check, listed.subject, listed.status) == ("reputation.dnsbl", "192.0.2.10", Status.ERROR)
    assert "bl.example (127.0.0.2: listed: see https://bl.example/10)" in listed.message
    assert "removal" in listed.fix
    assert clean.status == Status.OK and clean.message == "not listed on bl.example, slow.example"
    assert slow.status == Status.TIMEOUT and "slow.example" in slow.message


def test_dnsbl_ipv6_and_answers_that_are_not_listings():
    v6 = "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
    lookup = dict_lookup({
        (f"{v6}.bl.example", "A"): ["127.0.0.4"],  # listed; its TXT reason times out
        (f"{v6}.bl.example", "TXT"): LookupTimeout("TXT"),
        ("10.2.0.192.public.example", "A"): ["127.255.255.254"],  # "you query through a public resolver"
        ("10.2.0.192.dead.example", "A"): ["192.0.2.99"],  # a dead list answering everything
    })
    assert check_dnsbl(["2001:db8::1"], ["bl.example"], lookup)[0].message == "listed on bl.example (127.0.0.4)"
    for zone, words in (("public.example", "refused to answer this resolver"), ("dead.example", "still alive")):
        result = only(check_dnsbl(["192.0.2.10"], [zone], lookup))
        assert result.status == Status.WARN and words in result.message, result
    assert check_dnsbl(["192.0.2.10"], [], lookup) == []


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering from {(name, rdtype): [values]}; "silent" names get no answer."""

    def __init__(self, records: dict, silent: set[str]):
        self.records, self.silent = records, silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if (name, rdtype) in self.records:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rdtype,
                                                                self.records[(name, rdtype)]))
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


def test_dnsbl_through_a_real_resolver():
    """verify's own lookup (mailhost.verify.lookup_with) over dnspython, against a DNS server on 127.0.0.1."""
    server = DnsServer({("10.2.0.192.bl.example", "A"): ["127.0.0.2"],
                        ("10.2.0.192.bl.example", "TXT"): ['"spam seen"']}, silent={"11.2.0.192.bl.example"})
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [LOCAL], server.port, SHORT
    try:
        listed, clean, silent = check_dnsbl(["192.0.2.10", "192.0.2.12", "192.0.2.11"], ["bl.example"],
                                            lookup_with(resolver))
    finally:
        server.sock.close()
    assert listed.status == Status.ERROR and listed.message == "listed on bl.example (127.0.0.2: spam seen)"
    assert clean.status == Status.OK
    assert silent.status == Status.TIMEOUT
