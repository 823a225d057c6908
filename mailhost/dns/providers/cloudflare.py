"""Cloudflare (API v4, through the official SDK): records tagged by comment, one batch per zone.

Ownership is the record's comment, `mailhost owner=<tag>`. A zone's changes go out as one request
to the batch endpoint, which Cloudflare runs as one transaction (deletes, patches, puts, posts).

Retries. Reads use the SDK's retries (429 honouring Retry-After, 5xx, lost connections). Writes are
never replayed by the SDK: a 5xx or a lost answer may mean the batch did happen, so it raises
WriteUncertain and DnsSync reads the zone again before deciding. Only a 429, which Cloudflare sends
for requests it did not process, is retried here after its Retry-After.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import cloudflare
import dns.exception
import dns.rdata
import dns.rdatatype
import dns.tokenizer
import httpx
from cloudflare import Cloudflare

from mailhost.spec import DnsProvider

from ..plan import Change, Record, TtlRules
from ..records import rdata, txt
from .base import UNMANAGED_TYPES, DnsError, Provider, Signing, WriteUncertain, Zone, ZoneNotFound

# Records per page: the API documents up to 5,000,000; 5000 (what external-dns uses at most) already
# covers every plan's record limit (Free 1000, paid 3500), so a zone is one request.
PER_PAGE = 5000
RETRY_AFTER_CAP = 60.0  # seconds; longer waits are someone else's problem (fail, let the user re-run)
RETRY_AFTER_DEFAULT = 5.0
RATE_LIMIT_ATTEMPTS = 5
# The zone moved since it was read (the batch, all or nothing, wrote nothing): read again and re-plan.
ZONE_MOVED = {81058: "a record being created already exists", 81044: "a record being changed no longer exists"}
OURS = re.compile(r"^mailhost owner=(\S+)$")
# Types mailhost writes or that block its names: a value of these that cannot be read is an error, not
# something to skip, or the plan could miss a conflict.
MUST_PARSE = {"A", "AAAA", "CNAME", "MX", "TXT"}
PROXIABLE = {"A", "AAAA", "CNAME"}

T = TypeVar("T")


class CloudflareProvider(Provider):
    kind = "cloudflare"
    parallel_zones = 4  # well within 1,200 requests per 5 minutes
    # https://developers.cloudflare.com/dns/manage-dns-records/reference/ttl/ : 60-86400 s (1 = automatic),
    # each record its own.
    ttl_rules = TtlRules(minimum=60, maximum=86400, per_value=True)

    def __init__(self, config: DnsProvider, owner: str, base_dir: Path = Path(".")):
        super().__init__(config, owner, base_dir)
        self.comment = f"mailhost owner={owner}"
        token, self.token_source = self._token()
        http = cloudflare.DefaultHttpxClient(event_hooks={"request": [self._count]})
        self.client = self._client(token, http, cloudflare.DEFAULT_MAX_RETRIES)
        self.writer = self._client(token, http, 0)  # writes are never replayed blindly (see module doc)

    def _token(self) -> tuple[str, str]:
        """The API token and where it came from (for messages; the token itself is never shown)."""
        if self.config.api_token_file:
            path = self.base_dir / self.config.api_token_file
            where = f"dns.provider.api_token_file: {str(path)!r}"
            try:
                token = path.read_text(encoding="utf-8", errors="replace").strip()
            except OSError as exc:
                raise DnsError(f"{where} cannot be read ({exc.strerror})") from None
            if not token:
                raise DnsError(f"{where} is empty (it should hold the Cloudflare API token)")
            return self._checked(token, where), f"the file {path}"
        name = self.config.api_token_env
        token = os.environ.get(name, "").strip()
        if not token:
            raise DnsError(f"dns.provider.api_token_env: environment variable {name} is not set (the Cloudflare "
                           f"API token, with Zone.DNS edit and Zone.DNSSEC edit permissions)")
        return self._checked(token, f"dns.provider.api_token_env: environment variable {name}"), \
            f"the environment variable {name}"

    @staticmethod
    def _checked(token: str, where: str) -> str:
        """A token goes into an HTTP header: one that is not a single printable ASCII word would make the
        HTTP library fail with the whole header, token included, in its message. Refused here, unshown."""
        if not all("!" <= c <= "~" for c in token):
            raise DnsError(f"{where} holds more than the API token (a space, line break, control or non-ASCII "
                           "character); it should hold the token alone")
        return token

    def _client(self, token: str, http: httpx.Client, max_retries: int) -> Cloudflare:
        client = Cloudflare(api_token=token, base_url=self.config.endpoint or "https://api.cloudflare.com/client/v4",
                            http_client=http, max_retries=max_retries)
        # The SDK also reads CLOUDFLARE_EMAIL / _API_KEY / _API_USER_SERVICE_KEY from the environment and
        # would send those instead of our token: only the configured token may be used.
        client.api_key = client.api_email = client.user_service_key = None
        return client

    def _count(self, request: httpx.Request) -> None:
        """Every HTTP request, retries and pages included (httpx calls this once per request sent)."""
        self.requests.count(write=request.method != "GET")

    def describe(self) -> str:
        return f"cloudflare ({self.config.endpoint})" if self.config.endpoint else "cloudflare"

    def __repr__(self) -> str:
        return f"<CloudflareProvider {self.describe()} owner={self.owner}>"

    # -- reading --------------------------------------------------------------------------------------
    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """SDK errors of reads (after its retries) as DnsErrors that say what to do."""
        try:
            yield
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
            raise self._refused(what, exc) from None
        except cloudflare.APIStatusError as exc:
            raise DnsError(f"{what}: Cloudflare answered HTTP {exc.status_code} ({_errors(exc)})") from None
        except cloudflare.APIConnectionError as exc:
            raise DnsError(f"{what}: cannot reach the Cloudflare API at {self.client.base_url} "
                           f"({_cause(exc)})") from None

    def _refused(self, what: str, exc: cloudflare.APIStatusError) -> DnsError:
        return DnsError(f"{what}: Cloudflare refused the API token from {self.token_source} (HTTP {exc.status_code}: "
                        f"{_errors(exc)}); check that it is valid and has Zone.DNS edit and Zone.DNSSEC edit "
                        f"permissions on this zone")

    def zone(self, name: str) -> Zone:
        with self._reading(f"zone {name}"):
            found = [z for z in self.client.zones.list(name=name).result if z.name == name]
        if not found:
            raise ZoneNotFound(f"zone '{name}' not found in the Cloudflare account (the API token sees no zone of "
                               f"that name: add the zone at Cloudflare, or give the token access to it)")
        if len(found) > 1:
            accounts = ", ".join(sorted(str(getattr(z.account, "name", "?")) for z in found))
            raise DnsError(f"zone '{name}' exists in several accounts the token can see ({accounts}); use a token "
                           f"scoped to one of them")
        return Zone(name, found[0].id)

    def records(self, zone: Zone, wanted: Collection[tuple[str, str]] | None = None) -> list[Record]:
        records, page = [], 1
        with self._reading(f"zone {zone.name}"):
            while True:
                listing = self.client.dns.records.list(zone_id=zone.id, per_page=PER_PAGE, page=page)
                records += listing.result
                info = listing.result_info
                total = getattr(info, "total_pages", None)
                last = page >= total if total is not None else len(listing.result) < (info.per_page or PER_PAGE)
                if last or not listing.result:
                    break
                page += 1
        return [r for r in (self._record(zone, raw) for raw in records) if r is not None]

    def _record(self, zone: Zone, raw: Any) -> Record | None:
        """One API record as a Record; None for types mailhost neither writes nor can read."""
        rdtype = str(raw.type)
        name = str(raw.name).lower().rstrip(".")
        if rdtype in UNMANAGED_TYPES:
            return None
        try:
            value = parse_content(rdtype, raw.content or "", getattr(raw, "priority", None))
        except (dns.exception.DNSException, ValueError) as exc:
            if rdtype in MUST_PARSE:
                raise DnsError(f"zone {zone.name}: cannot read the {rdtype} record {name} "
                               f"({raw.content!r}: {exc})") from None
            return None
        match = OURS.match(raw.comment or "")
        return Record(name, rdtype, int(raw.ttl or 1), value, match[1] if match else None, raw.id)

    # -- writing --------------------------------------------------------------------------------------
    def _write(self, zone: Zone, call: Callable[[], T]) -> T:
        """One write request: retried only after a 429 (not processed); an unknown outcome is WriteUncertain."""
        for _ in range(RATE_LIMIT_ATTEMPTS):
            try:
                return call()
            except cloudflare.RateLimitError as exc:
                time.sleep(_retry_after(exc.response))
            except cloudflare.APIConnectionError as exc:  # includes timeouts
                raise WriteUncertain(f"zone {zone.name}: the write got no answer ({_cause(exc)}); it may "
                                     f"have been applied") from None
            except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
                raise self._refused(f"zone {zone.name}", exc) from None
            except cloudflare.APIStatusError as exc:
                if exc.status_code >= 500 or exc.status_code in (408, 409):
                    raise WriteUncertain(f"zone {zone.name}: Cloudflare answered HTTP {exc.status_code} to the "
                                         f"write ({_errors(exc)}); it may have been applied") from None
                moved = [ZONE_MOVED[c] for c in _codes(exc) if c in ZONE_MOVED]
                if moved:
                    raise WriteUncertain(f"zone {zone.name}: {moved[0]} ({_errors(exc)}); the zone changed "
                                         f"since it was read") from None
                raise DnsError(f"zone {zone.name}: Cloudflare refused the changes (HTTP {exc.status_code}: "
                               f"{_errors(exc)}); nothing was written") from None
        raise DnsError(f"zone {zone.name}: Cloudflare kept rate-limiting the write ({RATE_LIMIT_ATTEMPTS} tries); "
                       f"nothing was written, run again later")

    def apply(self, zone: Zone, changes: Sequence[Change]) -> None:
        deletes: list[dict] = []
        patches: list[dict] = []
        posts: list[dict] = []
        for change in changes:
            wanted = set(change.after.rdatas) if change.after else set()
            for record in change.before:  # ours (or adopted); `kept` records are never touched
                if record.rdata not in wanted:
                    deletes.append({"id": record.ref})
                    continue
                wanted.discard(record.rdata)  # so a second record with this value is deleted
                if record.ttl != change.ttl or record.owner != self.owner:
                    patches.append({"id": record.ref, **self._body(change, record.rdata)})
            posts += [self._body(change, rd) for rd in sorted(wanted, key=lambda rd: rd.to_text())]
        batch = {k: v for k, v in (("deletes", deletes), ("patches", patches), ("posts", posts)) if v}
        if batch:
            self._write(zone, lambda: self.writer.dns.records.batch(zone_id=zone.id, **batch))

    def _body(self, change: Change, rd: dns.rdata.Rdata) -> dict:
        """A record as the API takes it, tagged as ours."""
        content, priority = to_content(rd)
        body: dict = {"name": change.name, "type": change.rdtype, "ttl": change.ttl, "content": content,
                      "comment": self.comment}
        if (data := to_data(rd)) is not None:  # for these types, `content` is what the API shows, not takes
            del body["content"]
            body["data"] = data
            if "priority" in data:
                priority = data["priority"]
        if priority is not None:
            body["priority"] = priority
        if change.rdtype in PROXIABLE:
            body["proxied"] = False  # mail needs the host's own address, not Cloudflare's proxy
        return body

    # -- DNSSEC ---------------------------------------------------------------------------------------
    def signing(self, zone: Zone, enable: bool) -> Signing:
        with self._reading(f"zone {zone.name} DNSSEC"):
            state = self.client.dns.dnssec.get(zone_id=zone.id)
        if enable and _status(state) == "disabled":
            try:
                state = self._write(zone, lambda: self.writer.dns.dnssec.edit(zone_id=zone.id, status="active"))
            except WriteUncertain:  # turning it on twice is harmless, but look before saying anything
                with self._reading(f"zone {zone.name} DNSSEC"):
                    state = self.client.dns.dnssec.get(zone_id=zone.id)
        status = _status(state)
        notes = {"pending": "Cloudflare signs the zone and waits for the DS at the registrar",
                 "pending-disabled": "Cloudflare is turning signing off",
                 "error": "Cloudflare reports a DNSSEC error (see the dashboard)",
                 "disabled": "" if enable else "signing is off (dns.dnssec: false)"}
        return Signing(zone.name, status in ("active", "pending"), status, _ds(state), notes.get(status, ""))


# -- values -------------------------------------------------------------------------------------------
def parse_content(rdtype: str, content: str, priority: float | None = None) -> dns.rdata.Rdata:
    """Cloudflare's `content` (+ `priority`) as canonical rdata. TXT content is either quoted
    character-strings (`"a" "b"`, how it is written now) or one bare string (older records)."""
    if rdtype == "TXT":
        return txt(_txt_bytes(content))
    if rdtype in ("MX", "SRV", "URI") and priority is not None:
        return rdata(rdtype, f"{int(priority)} {content}")
    return rdata(rdtype, content)


def _txt_bytes(content: str) -> bytes:
    if content.startswith('"'):
        try:
            tokens = dns.tokenizer.Tokenizer(content)
            strings = []
            while not (token := tokens.get()).is_eol_or_eof():
                if not token.is_quoted_string():
                    raise dns.exception.SyntaxError("text outside quotes")
                strings.append(token.unescape_to_bytes().value)
            return b"".join(strings)
        except dns.exception.DNSException:
            pass  # not character-strings after all: a bare value that starts with a quote
    return content.encode()


def to_content(rd: dns.rdata.Rdata) -> tuple[str, int | None]:
    """(content, priority) for the API: TXT as quoted 255-byte strings, host names without the final dot."""
    if rd.rdtype == dns.rdatatype.MX:
        return rd.exchange.to_text(omit_final_dot=True), rd.preference
    if rd.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.PTR):
        return rd.target.to_text(omit_final_dot=True), None
    return rd.to_text(), None


def to_data(rd: dns.rdata.Rdata) -> dict | None:
    """The `data` object the API takes for the structured types mailhost writes (CAA, TLSA, SRV); None for others."""
    if rd.rdtype == dns.rdatatype.CAA:
        return {"flags": rd.flags, "tag": rd.tag.decode(), "value": rd.value.decode()}
    if rd.rdtype == dns.rdatatype.TLSA:
        return {"usage": rd.usage, "selector": rd.selector, "matching_type": rd.mtype, "certificate": rd.cert.hex()}
    if rd.rdtype == dns.rdatatype.SRV:
        return {"priority": rd.priority, "weight": rd.weight, "port": rd.port,
                "target": rd.target.to_text(omit_final_dot=True) or "."}
    return None


def _codes(exc: cloudflare.APIStatusError) -> set[int]:
    body = exc.body if isinstance(exc.body, dict) else {}
    errors = body.get("errors") or []
    return {e.get("code") for e in errors if isinstance(e, dict)} | \
        {c.get("code") for e in errors if isinstance(e, dict) for c in e.get("error_chain") or []
         if isinstance(c, dict)}


def _errors(exc: cloudflare.APIStatusError) -> str:
    """Cloudflare's error codes and messages, e.g. `1004 DNS Validation Error (9005 Content for A ...)`."""
    body = exc.body if isinstance(exc.body, dict) else {}
    found = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        chain = "; ".join(f"{c.get('code')} {c.get('message')}" for c in error.get("error_chain") or []
                          if isinstance(c, dict))
        found.append(f"{error.get('code')} {error.get('message')}" + (f" ({chain})" if chain else ""))
    return "; ".join(found) or "no error details"


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)


def _retry_after(response: httpx.Response) -> float:
    try:
        delay = float(response.headers.get("retry-after", ""))
    except ValueError:
        delay = RETRY_AFTER_DEFAULT
    return min(max(delay, 0.0), RETRY_AFTER_CAP)


def _status(state: Any) -> str:
    return str(getattr(state, "status", None) or "disabled")


def _ds(state: Any) -> tuple[str, ...]:
    """The DS to publish, from the full `ds` record Cloudflare gives, else from its parts."""
    words = str(getattr(state, "ds", None) or "").split()
    if "DS" in words and len(words) >= words.index("DS") + 5:
        tag, alg, kind, *digest = words[words.index("DS") + 1:]
        return (f"{tag} {alg} {kind} {''.join(digest)}",)
    parts = [getattr(state, k, None) for k in ("key_tag", "algorithm", "digest_type", "digest")]
    if all(parts):
        return (f"{int(float(parts[0]))} {int(parts[1])} {int(parts[2])} {parts[3]}",)
    return ()


PROVIDER = CloudflareProvider
