"""The verify report: exit codes, stable JSON, text grouped per domain, colours only when wanted."""

from __future__ import annotations

import io
import json

import pytest

from mailhost.verify.cli import ssh_runner
from mailhost.verify.report import Report, group_of, split_subject
from mailhost.verify.result import Result, Status, error, ok, timeout, warn

GROUPS = ["example.org", "example.net", "mail.example.org"]

RESULTS = [
    ok("tls.smtp-starttls", "mail.example.org:25", "STARTTLS with a valid certificate"),
    error("dns.spf", "example.org", "192.0.2.10 may not send as example.org: SPF fail",
          "add `mx` or `ip4:192.0.2.10` to the SPF record of example.org"),
    ok("dns.dmarc", "example.org", "DMARC policy p=quarantine"),
    warn("dns.dmarc", "example.net", "DMARC policy p=none: receivers deliver mail that fails DMARC",
         "set p=quarantine (or reject) once the reports show all your mail passes"),
    ok("host.services", "mail.example.org", "postfix, dovecot, rspamd running"),
    ok("tls.smtps", "mail.example.org:465", "TLS with a valid certificate"),
    ok("dns.dkim", "mail._domainkey.example.org", "DKIM key 'mail' published"),
    ok("dns.spf", "example.net", "SPF record valid"),
    ok("backup.target", "backup.elsewhere.test", "reachable"),
]

EXPECTED_TEXT = """\
example.net
  WARN    dns.dmarc          DMARC policy p=none: receivers deliver mail that fails DMARC
          fix: set p=quarantine (or reject) once the reports show all your mail passes
  ok      dns.spf            SPF record valid

example.org
  ok      dns.dmarc          DMARC policy p=quarantine
  ERROR   dns.spf            192.0.2.10 may not send as example.org: SPF fail
          fix: add `mx` or `ip4:192.0.2.10` to the SPF record of example.org
  mail._domainkey.example.org
    ok      dns.dkim           DKIM key 'mail' published

mail.example.org
  ok      host.services      postfix, dovecot, rspamd running
  mail.example.org:25
    ok      tls.smtp-starttls  STARTTLS with a valid certificate
  mail.example.org:465
    ok      tls.smtps          TLS with a valid certificate

other
  backup.elsewhere.test
    ok      backup.target      reachable

7 ok, 1 warning, 1 error
"""


def test_text_groups_per_domain_with_host_ports_under_the_host():
    assert Report(RESULTS, GROUPS).text(color=False) == EXPECTED_TEXT


def test_output_does_not_depend_on_the_order_results_came_in():
    one, other = Report(RESULTS, GROUPS), Report(list(reversed(RESULTS)), reversed(GROUPS))
    assert one.text(color=False) == other.text(color=False)
    assert one.text(color=True) == other.text(color=True)
    assert json.dumps(one.to_json()) == json.dumps(other.to_json())
    assert one.text(color=False) == one.text(color=False)


@pytest.mark.parametrize("results, normal, strict", [
    ([], 0, 0),
    ([ok("a", "example.org", "fine")], 0, 0),
    ([ok("a", "example.org", "fine"), warn("b", "example.org", "hm")], 0, 1),
    ([warn("b", "example.org", "hm"), error("c", "example.org", "broken")], 2, 2),
    ([ok("a", "example.org", "fine"), timeout("d", "example.org", "MX of example.org")], 2, 2),
])
def test_exit_codes(results, normal, strict):
    report = Report(results)
    assert (report.exit_code(strict=False), report.exit_code(strict=True)) == (normal, strict)


def test_json_is_sorted_by_group_then_check_then_subject_and_counts_statuses():
    data = Report(RESULTS, GROUPS).to_json()
    assert data["summary"] == {"ok": 7, "warn": 1, "error": 1, "timeout": 0}
    keys = [(r["group"], r["check"], r["subject"]) for r in data["results"]]
    assert keys == [
        ("example.net", "dns.dmarc", "example.net"),
        ("example.net", "dns.spf", "example.net"),
        ("example.org", "dns.dkim", "mail._domainkey.example.org"),
        ("example.org", "dns.dmarc", "example.org"),
        ("example.org", "dns.spf", "example.org"),
        ("mail.example.org", "host.services", "mail.example.org"),
        ("mail.example.org", "tls.smtp-starttls", "mail.example.org:25"),
        ("mail.example.org", "tls.smtps", "mail.example.org:465"),
        (None, "backup.target", "backup.elsewhere.test"),
    ]
    assert data["results"][0] == {"group": "example.net", "check": "dns.dmarc", "subject": "example.net",
                                  "status": "warn", "message": RESULTS[3].message, "fix": RESULTS[3].fix}
    json.dumps(data)  # plain data only


def test_same_check_and_subject_sort_by_message():
    a, b = ok("dns.spf", "example.org", "a"), ok("dns.spf", "example.org", "b")
    assert Report([b, a]).results == [a, b]


@pytest.mark.parametrize("subject, group", [
    ("example.org", "example.org"),
    ("Example.ORG.", "example.org"),
    ("_dmarc.example.org", "example.org"),
    ("mail.example.org", "mail.example.org"),
    ("mail.example.org:465", "mail.example.org"),
    ("smtp.mail.example.org:25", "mail.example.org"),
    ("notexample.org", None),
    ("example.com", None),
])
def test_a_subject_belongs_to_the_longest_group_it_is_under(subject, group):
    assert group_of(subject, GROUPS) == group


def test_without_groups_a_subject_is_grouped_by_its_host():
    assert group_of("mail.example.org:587", []) == "mail.example.org"
    assert split_subject("[2001:db8::1]:25") == ("2001:db8::1", 25)
    assert split_subject("2001:db8::25") == ("2001:db8::25", None)


def test_no_ansi_without_colour_and_words_for_the_status():
    text = Report(RESULTS + [timeout("dns.mx", "example.org", "MX")], GROUPS).text(color=False)
    assert "\x1b" not in text
    assert "  ERROR   dns.spf" in text and "  TIMEOUT dns.mx" in text and "✓" not in text
    assert text.endswith("7 ok, 1 warning, 1 error, 1 timeout\n")


def test_ansi_and_marks_with_colour():
    text = Report(RESULTS + [timeout("dns.mx", "example.org", "MX")], GROUPS).text(color=True)
    assert "\x1b[31m✗\x1b[0m dns.spf" in text
    assert "\x1b[32m✓\x1b[0m" in text and "\x1b[33m!\x1b[0m" in text and "\x1b[35m⏱\x1b[0m" in text
    assert "\x1b[1mexample.org\x1b[0m" in text
    assert "    fix: add `mx`" in text  # under the message, past the one-character mark


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_by_default_only_on_a_terminal_without_no_color(monkeypatch):
    report = Report(RESULTS, GROUPS)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert "\x1b[" not in report.text()
    monkeypatch.setattr("sys.stdout", Tty())
    assert "\x1b[" in report.text()
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in report.text()
    assert "\x1b[" in report.text(color=True)


def test_fix_lines_only_for_results_that_are_not_ok():
    results = [Result("a", "example.org", Status.OK, "fine", "a fix nobody needs"),
               warn("b", "example.org", "hm", "do this"),
               error("c", "example.org", "broken", "do that"),
               error("d", "example.org", "broken, no advice")]
    lines = Report(results).text(color=False).splitlines()
    assert [line.strip() for line in lines if "fix:" in line] == ["fix: do this", "fix: do that"]
    assert "a fix nobody needs" not in "\n".join(lines)


def test_summary_counts_and_plurals():
    assert Report([]).summary() == "0 ok, 0 warnings, 0 errors"
    assert Report([ok("a", "x.org", "m"), error("b", "x.org", "m"), error("c", "x.org", "m")]).summary() == \
        "1 ok, 0 warnings, 2 errors"


def test_ssh_runner_tries_again_when_the_host_is_not_reached():
    """One lost connection does not turn the report red; the last error still says what ssh said."""
    run = ssh_runner("root@127.0.0.1", None, ["Port=1", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"])
    with pytest.raises(OSError, match=r"ssh root@127.0.0.1: .*Connection refused.* \(tried 3 times\)"):
        run("true")


def test_checks_run_at_once_but_the_host_sees_a_few_connections_at_a_time():
    """run_jobs starts every job at once and keeps their order; `limited` jobs never overlap more than asked."""
    import threading
    import time as clock
    from mailhost.verify import limited, run_jobs
    from mailhost.verify.result import ok
    running, most, lock = [0], [0], threading.Lock()

    def job(i: int, counted: bool = True):
        def run():
            with lock:
                running[0] += counted
                most[0] = max(most[0], running[0])
            clock.sleep(0.05)
            with lock:
                running[0] -= counted
            return [ok("x", str(i), "done")]
        return run
    start = clock.monotonic()
    results = list(run_jobs(limited([job(i) for i in range(12)], 3) + [job(99, counted=False)]))
    assert [r.subject for r in results] == [str(i) for i in range(12)] + ["99"]
    assert 2 <= most[0] <= 3
    assert clock.monotonic() - start < 12 * 0.05  # still far quicker than one after the other


def test_verify_in_the_deploy_opens_few_shells_at_once_and_a_lost_one_is_an_error_in_the_report():
    """The deploy's verify shares pyinfra's one SSH connection, on which sshd refuses an eleventh session: the
    runner keeps its commands to SESSIONS at a time, and a refused channel becomes an OSError that the on-host
    check reports (with what it found before), not an exception that ends pyinfra."""
    import threading
    import time as clock
    from types import SimpleNamespace
    from paramiko.ssh_exception import ChannelException
    from mailhost.verify import on_host, run_jobs
    from mailhost.verify.result import Status, ok
    from stages import verify as stage
    running, most, lock = [0], [0], threading.Lock()

    class Host:
        name = "mail"

        def run_shell_command(self, command):
            if command == "refused":
                raise ChannelException(2, "Connect failed")
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            clock.sleep(0.05)
            with lock:
                running[0] -= 1
            return True, SimpleNamespace(stdout=command, stderr="")

    run = stage._runner(Host())
    outputs = list(run_jobs([lambda i=i: [ok("x", run(f"echo {i}"), "done")] for i in range(12)]))
    assert [r.subject for r in outputs] == [f"echo {i}" for i in range(12)]
    assert most[0] == stage.SESSIONS

    def check():
        yield ok("host.first", "mail", run("seen"))
        yield ok("host.second", "mail", run("refused"))
    results = on_host("mail.example.org", check)()
    assert [(r.check, r.status) for r in results] == [("host.first", Status.OK), ("host.access", Status.ERROR)]
    assert "not finished: no shell on mail: ChannelException" in results[1].message
