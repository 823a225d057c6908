"""What a receiving mail system sends back about a domain's mail: a DMARC aggregate report (RFC 7489 7.2,
gzip-compressed XML attached to a message to the domain's `rua` address), as the tests of `mailhost reports`
need one."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from email.message import EmailMessage

DAY = 1764460800  # 2025-11-30 00:00 UTC: the reported day


@dataclass(frozen=True)
class Row:
    """Messages from one source with one outcome."""
    source_ip: str
    count: int
    dkim: str  # DMARC-aligned DKIM result: pass | fail
    spf: str
    disposition: str  # what the receiver did: none | quarantine | reject
    header_from: str


def aggregate_report(domain: str, rows: list[Row], org: str = "remote.test", report_id: str = "r1") -> bytes:
    """The report's XML (RFC 7489 appendix C), the domain's published policy being p=reject."""
    records = "".join(
        f"<record><row><source_ip>{r.source_ip}</source_ip><count>{r.count}</count><policy_evaluated>"
        f"<disposition>{r.disposition}</disposition><dkim>{r.dkim}</dkim><spf>{r.spf}</spf></policy_evaluated>"
        f"</row><identifiers><header_from>{r.header_from}</header_from></identifiers><auth_results><spf>"
        f"<domain>{r.header_from}</domain><result>{r.spf}</result></spf></auth_results></record>" for r in rows)
    return (f'<?xml version="1.0" encoding="UTF-8"?><feedback><report_metadata><org_name>{org}</org_name>'
            f"<email>noreply-dmarc@{org}</email><report_id>{report_id}</report_id><date_range><begin>{DAY}</begin>"
            f"<end>{DAY + 86399}</end></date_range></report_metadata><policy_published><domain>{domain}</domain>"
            f"<adkim>r</adkim><aspf>r</aspf><p>reject</p><pct>100</pct></policy_published>{records}</feedback>"
            ).encode()


def report_message(domain: str, to: str, attachment: bytes, org: str = "remote.test", report_id: str = "r1",
                   filename: str | None = None, content_type: str = "application/gzip") -> EmailMessage:
    """The message carrying a report (by default `attachment` is the XML, gzipped here)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = f"noreply-dmarc@{org}", to
    msg["Subject"] = f"Report Domain: {domain} Submitter: {org} Report-ID: {report_id}"
    msg.set_content(f"DMARC aggregate report for {domain} from {org}.")
    maintype, subtype = content_type.split("/")
    if content_type == "application/gzip":
        attachment = gzip.compress(attachment)
    msg.add_attachment(attachment, maintype=maintype, subtype=subtype,
                       filename=filename or f"{org}!{domain}!{DAY}!{DAY + 86399}.xml.gz")
    return msg
