"""`mailhost reports`: DMARC aggregate reports found in messages (gzip, zip), summarised per domain of ours;
which mailbox they arrive in."""

from __future__ import annotations

import io
import zipfile
import pytest

from lab.dmarc_reports import Row, aggregate_report, report_message
from mailhost.reports import ReportsError, render, report_mailbox, reports_in, summarise, to_json
from mailhost.spec import parse_spec

HASH = "{SHA512-CRYPT}$6$x$y"
HOST_IP = "192.0.2.10"
FORGER = "203.0.113.66"


def aggregate(domain: str = "example.org", report_id: str = "r1") -> bytes:
    """10 messages from the host passing both, 3 from a forger failing both (rejected), and 2 from someone
    else's domain, which is no business of ours."""
    return aggregate_report(domain, [Row(HOST_IP, 10, "pass", "pass", "none", domain),
                                     Row(FORGER, 3, "fail", "fail", "reject", domain),
                                     Row("198.51.100.7", 2, "fail", "fail", "none", "elsewhere.example")],
                            org="receiver.example", report_id=report_id)


def message(name: str, payload: bytes, maintype: str, subtype: str) -> bytes:
    return report_message("example.org", "postmaster@example.org", payload, org="receiver.example",
                          filename=name, content_type=f"{maintype}/{subtype}").as_bytes()


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def test_reports_arrive_gzipped_or_zipped_and_other_attachments_are_named_not_reports():
    gz = message("receiver!example.org!1!2.xml.gz", aggregate(), "application", "gzip")  # gzipped there
    zp = message("receiver!example.org!1!2.zip", zipped("r.xml", aggregate(report_id="r2")), "application", "zip")
    [a], [] = reports_in(gz)
    [b], [] = reports_in(zp)
    assert (a.report_metadata.report_id, b.report_metadata.report_id) == ("r1", "r2")
    found, problems = reports_in(message("invoice.zip", zipped("invoice.pdf", b"%PDF-1.7"), "application", "zip"))
    assert found == [] and len(problems) == 1
    found, problems = reports_in(message("notes.xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
                                         "text", "xml"))
    assert found == [] and len(problems) == 1  # entities refused (defused XML), not expanded


def test_the_summary_counts_alignment_per_domain_and_names_senders_that_are_not_the_host():
    reports = [reports_in(message("a.xml.gz", aggregate(report_id=f"r{n}"), "application", "gzip"))[0][0]
               for n in range(2)]
    summaries = summarise(reports, ["example.org", "example.net"])
    org, net = summaries["example.org"], summaries["example.net"]
    assert (org.reports, org.messages, org.dmarc_pass, org.dkim_aligned, org.spf_aligned) == (2, 26, 20, 20, 20)
    assert dict(org.dispositions) == {"reject": 6} and dict(org.policies) == {"reject": 2}
    assert {ip: (s.messages, s.passed) for ip, s in org.sources.items()} == {HOST_IP: (20, 20), FORGER: (6, 0)}
    assert list(org.unknown_senders({HOST_IP})) == [FORGER]
    assert net.reports == 0 and "elsewhere.example" not in summaries
    text = render(summaries, {HOST_IP})
    assert "example.org: 2 report(s), 2025-11-30 to 2025-11-30, 26 message(s)" in text
    assert "DMARC pass 20/26 (77%); DKIM aligned 20/26 (77%); SPF aligned 20/26 (77%)" in text
    assert f"{FORGER:<40}      6 message(s),      0 pass  [NOT this host" in text
    assert "1 sender(s) other than this host use example.org (6 message(s) failed DMARC)" in text
    assert "example.net: no reports" in text
    assert to_json(summaries, {HOST_IP})["example.org"]["sources"][FORGER] == {
        "messages": 6, "pass": 0, "ours": False, "reporters": ["receiver.example"]}


def spec(**dns):
    return parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                       "mailboxes": [{"address": "alice@example.org", "password_hash": HASH},
                                     {"address": "reports@example.org", "password_hash": HASH}],
                       "aliases": [{"source": "dmarc@example.org", "destinations": ["reports@example.org"]}],
                       "dns": dns})


def test_the_reports_are_read_where_the_rua_address_leads():
    assert report_mailbox(spec()) == "alice@example.org"  # postmaster@, routed to the domain's first mailbox
    assert report_mailbox(spec(dmarc={"rua": ["dmarc@example.org"]})) == "reports@example.org"  # an alias
    assert report_mailbox(spec(), "reports@example.org") == "reports@example.org"
    with pytest.raises(ReportsError, match="dmarc-reports@elsewhere.example, which is not a mailbox on this host"):
        report_mailbox(spec(dmarc={"rua": ["dmarc-reports@elsewhere.example"]}))
    with pytest.raises(ReportsError, match="--mailbox bob@example.org is not one of the spec's mailboxes"):
        report_mailbox(spec(), "bob@example.org")
    # A catch-all takes postmaster@ (mailhost then routes no role address itself).
    catch_all = parse_spec({"hostname": "mail.example.org", "domains": [{"name": "example.org"}],
                            "mailboxes": [{"address": "alice@example.org", "password_hash": HASH},
                                          {"address": "reports@example.org", "password_hash": HASH}],
                            "aliases": [{"source": "@example.org", "destinations": ["reports@example.org"]}]})
    assert report_mailbox(catch_all) == "reports@example.org"


def test_a_number_of_days_that_is_not_one_is_refused_by_name(capsys):
    from mailhost.cli import main
    with pytest.raises(SystemExit):
        main(["reports", "--days", "-3", "spec.yaml"])
    assert "argument --days: '-3' is not a number of days (1 or more)" in capsys.readouterr().err
