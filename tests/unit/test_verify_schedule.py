"""How verify schedules its checks of the host's services (`mailhost.verify._service_checks`): every check's
function replaced by one that notes when it ran, the greeting slowed as postscreen's greet pause slows it."""

from __future__ import annotations

import threading
import time

import pytest

import mailhost.verify as verify
from mailhost.spec import parse_spec
from mailhost.verify.checks import probe, smtp, tls
from mailhost.verify.result import ok

ADDRESSES = ["192.0.2.25", "2001:db8::25"]
PAUSE = 0.4  # the greet pause, scaled down


@pytest.fixture
def calls(monkeypatch):
    """(what, port, started, ended) of every check run, the banners taking PAUSE; how many overlapped."""
    seen: list[tuple[str, int, float, float]] = []
    gated = {"now": 0, "most": 0}
    lock = threading.Lock()

    def fake(what: str, port_of=lambda *a, **k: 25, wait: float = 0.05, counted: bool = True):
        def check(*args, **kwargs):
            start = time.monotonic()
            with lock:
                gated["now"] += counted
                gated["most"] = max(gated["most"], gated["now"])
            time.sleep(wait)
            with lock:
                gated["now"] -= counted
            seen.append((what, port_of(*args, **kwargs), start, time.monotonic()))
            return [ok(what, f"{what} {args[:2]}", "fine")]
        return check
    monkeypatch.setattr(smtp, "check_banner", fake("banner", wait=PAUSE, counted=False))
    def check_probe(*args):  # submits on 587 at once, then forwards its copy in on port 25
        seen.append(("probe", 587, time.monotonic(), time.monotonic()))
        args[-1]()
        seen.append(("probe forwarded", 25, time.monotonic(), time.monotonic()))
        return [ok("mail.probe", "probe", "fine")]
    monkeypatch.setattr(probe, "check_probe", check_probe)
    monkeypatch.setattr(tls, "check_tls", fake("tls", lambda address, port, *a, **k: port))
    for name in ("check_vrfy_expn", "check_role_addresses", "check_open_relay"):
        monkeypatch.setattr(smtp, name, fake(name))
    monkeypatch.setattr(smtp, "check_auth_before_tls", fake("auth-before-tls", lambda a, h, port: port))
    monkeypatch.setattr(smtp, "check_submission_requires_auth", fake("submission", lambda *a, **k: a[3]))
    monkeypatch.setattr(smtp, "check_dnsbl", fake("dnsbl", lambda *a: 0))
    monkeypatch.setattr(verify, "check_tlsa", fake("tlsa"))
    monkeypatch.setattr(verify, "_check_caa", fake("caa"))
    monkeypatch.setattr(verify, "check_mta_sts", fake("mta-sts", lambda *a: 443))
    monkeypatch.setattr(verify, "check_autoconfig", fake("autoconfig", lambda *a: 443))
    return seen, gated


def test_port_25_waits_for_one_greeting_per_address_and_the_rest_goes_on_meanwhile(calls):
    """postscreen keeps every connection of a new client in its greet pause until one has passed: a check on
    port 25 starts once the greetings are through, other ports' checks start at once; the host never sees more
    than HOST_CONNECTIONS of the gated checks at a time."""
    seen, gated = calls
    spec = parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                       "mailboxes": [{"address": "a@example.org", "password_hash": "{SHA512-CRYPT}$6$x$y"}]})
    jobs = verify._service_checks(verify.Target(spec), ADDRESSES, lambda n, t: [], None, None, None)
    results = list(verify.run_jobs(jobs))
    assert len(results) == len(seen) - 1 == len(jobs)
    greeted = max(end for what, _, _, end in seen if what == "banner")
    assert sum(what == "banner" for what, *_ in seen) == len(ADDRESSES)
    on_25 = [(what, start) for what, port, start, _ in seen if port == 25 and what not in ("banner",)]
    assert {what for what, _ in on_25} >= {"tls", "tlsa", "caa", "check_vrfy_expn", "check_open_relay",
                                           "probe forwarded"}
    assert all(start >= greeted for _, start in on_25), on_25
    assert any(start < greeted - PAUSE / 2 for what, port, start, _ in seen if port not in (25, 587)), seen
    assert 1 < gated["most"] <= verify.HOST_CONNECTIONS
