"""A stateful fake of the Cloudflare API v4, served over HTTP on 127.0.0.1, for the provider's tests and benchmark.

It keeps zones, DNS records and DNSSEC state and behaves as Cloudflare documents it for what mailhost
uses, so the real SDK can be pointed at it (`base_url=fake.url`):

* bearer-token auth: a missing or malformed header is 400 (6003/6111), a wrong token 403 (10000);
* the envelope `{success, errors, messages, result, result_info}`, paginated lists with
  `result_info` {page, per_page, count, total_count, total_pages} and the documented per_page bounds;
* `GET /zones?name=`, `GET /zones/{id}`;
* `GET/POST /zones/{id}/dns_records` (filters name, type, content), `GET/PATCH/PUT/DELETE .../{record_id}`;
* `POST /zones/{id}/dns_records/batch`: deletes, patches, puts, posts, in that order, all or nothing;
* record rules: names made absolute in the zone and lowercased, TTL 1 (automatic) or 60-86400,
  content checked per type (1004 "DNS Validation Error" with the reason in `error_chain`),
  81058 for an identical record, 81053/81054 for CNAME clashes, 81044 for an unknown record id;
* `GET/PATCH /zones/{id}/dnssec`: enabling goes disabled -> pending with a real ECDSA P-256 key
  (algorithm 13) and its SHA-256 DS; the zone turns active when the registrar has the DS.

What the real API does not have, for tests: `inject()` queues faults for the next matching request
(429 with Retry-After, 500 before or after the write commits, a dropped connection before or after),
`page_size_cap` serves fewer records per page than asked (to test paging with few records),
`activate_dnssec()` plays the registrar publishing the DS, and `add_zone()`, `add_record()`,
`records()` seed and inspect state without going through HTTP. `requests` counts what was served.

    with FakeCloudflare() as cf:
        cf.add_zone("example.org")
        client = Cloudflare(api_token=cf.token, base_url=cf.url)
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import math
import re
import secrets
import socket
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import dns.dnssec
import dns.exception
import dns.name
import dns.rdtypes.ANY.DNSKEY
import dns.tokenizer
from cryptography.hazmat.primitives.asymmetric import ec

PREFIX = "/client/v4"
ZONES_PER_PAGE = (5, 50, 20)  # min, max, default (API docs: List Zones)
RECORDS_PER_PAGE = (1, 5_000_000, 100)  # min, max, default (API docs: List DNS Records)
TTL_AUTO, TTL_MIN, TTL_MAX = 1, 60, 86400
TXT_MAX = 2048  # characters of TXT content
COMMENT_MAX = 100  # characters of a record comment (Free plan)
PROXIABLE = {"A", "AAAA", "CNAME"}
HOST_TYPES = {"CNAME", "MX", "NS", "PTR"}  # content is a host name
# Types set through a structured `data` object (its fields and their JSON types); of these, mailhost writes two.
DATA_TYPES = {"CAA": {"flags": int, "tag": str, "value": str},
              "TLSA": {"usage": int, "selector": int, "matching_type": int, "certificate": str},
              "SRV": {"priority": int, "weight": int, "port": int, "target": str}}
TYPES = {"A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS", "OPENPGPKEY",
         "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI"}
FAULTS = {"429", "500", "500-after", "drop", "drop-after"}
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$)(\*\.)?({_LABEL}\.)*{_LABEL}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


class ApiError(Exception):
    """An error answer: HTTP status and Cloudflare's error object (code, message, optional error_chain)."""

    def __init__(self, status: int, code: int, message: str, chain: tuple[tuple[int, str], ...] = ()):
        super().__init__(f"{code} {message}")
        self.status, self.code, self.message, self.chain = status, code, message, chain

    def error(self) -> dict:
        found = {"code": self.code, "message": self.message}
        if self.chain:
            found["error_chain"] = [{"code": c, "message": m} for c, m in self.chain]
        return found


def invalid(code: int, message: str) -> ApiError:
    """Record content problems: Cloudflare answers 1004 and puts the reason in error_chain."""
    return ApiError(400, 1004, "DNS Validation Error", ((code, message),))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def txt_bytes(content: str) -> bytes:
    """What a TXT content means: quoted character-strings (escapes allowed, long ones split) or else one
    bare string. Used to tell identical records apart, as Cloudflare compares meaning, not spelling."""
    if content.startswith('"'):
        try:
            tok = dns.tokenizer.Tokenizer(content)
            parts = []
            while not (t := tok.get()).is_eol_or_eof():
                if not t.is_quoted_string():
                    raise dns.exception.SyntaxError("unquoted text between strings")
                parts.append(t.unescape_to_bytes().value)
            return b"".join(parts)
        except dns.exception.DNSException:
            pass
    return content.encode()


@dataclass
class Fault:
    kind: str
    method: str | None
    path_contains: str | None
    retry_after: str

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path_contains is None or self.path_contains in path)


@dataclass
class FakeZone:
    id: str
    name: str
    created_on: str
    records: dict[str, dict] = field(default_factory=dict)  # record id -> record as the API shows it
    dnssec: dict = field(default_factory=lambda: {"status": "disabled", "modified_on": None})
    key: ec.EllipticCurvePrivateKey | None = None

    def json(self) -> dict:
        return {"id": self.id, "name": self.name, "status": "active", "paused": False, "type": "full",
                "development_mode": 0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None, "original_registrar": None, "original_dnshost": None,
                "created_on": self.created_on, "modified_on": self.created_on, "activated_on": self.created_on,
                "meta": {"phishing_detected": False}, "owner": {"id": None, "type": "user", "email": None},
                "account": {"id": "0" * 32, "name": "Fake account"},
                "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
                "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "legacy_id": "free"}}


class FakeCloudflare:
    """The fake API server. Start with `start()` or `with`; `url` is the SDK's base_url."""

    def __init__(self, token: str | None = None):
        self.token = token or secrets.token_urlsafe(30)
        self.zones: dict[str, FakeZone] = {}
        self.requests: Counter[str] = Counter()  # "METHOD /route" (ids as :id) -> requests received
        self.page_size_cap: int | None = None
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Self:
        fake = self

        class Handler(_Handler):
            api = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-cloudflare", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server, "start() the fake first"
        return f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"

    # -- test helpers -------------------------------------------------------------------------------
    def add_zone(self, name: str) -> str:
        zone = FakeZone(uuid.uuid4().hex, name.lower().rstrip("."), now())
        with self.lock:
            self.zones[zone.id] = zone
        return zone.id

    def zone(self, name: str) -> FakeZone:
        found = [z for z in self.zones.values() if z.name == name.lower().rstrip(".")]
        if not found:
            raise KeyError(f"no zone {name} in the fake")
        return found[0]

    def add_record(self, zone_name: str, type: str, name: str, content: str, ttl: int = TTL_AUTO, **fields) -> str:
        """Seed a record as if made in the dashboard (same validation as the API); returns its id."""
        with self.lock:
            zone = self.zone(zone_name)
            record = self._create(zone, zone.records, {"type": type, "name": name, "content": content, "ttl": ttl,
                                                       **fields})
        return record["id"]

    def remove_record(self, zone_name: str, record_id: str) -> None:
        """Delete a record behind the client's back (someone else's change in the dashboard)."""
        with self.lock:
            del self.zone(zone_name).records[record_id]

    def records(self, zone_name: str, type: str | None = None, name: str | None = None) -> list[dict]:
        """Copies of the zone's records (optionally one name and/or type)."""
        with self.lock:
            return [copy.deepcopy(r) for r in self.zone(zone_name).records.values()
                    if (type is None or r["type"] == type) and (name is None or r["name"] == name)]

    def inject(self, fault: str, method: str | None = None, path_contains: str | None = None,
               retry_after: str = "1") -> None:
        """Make the next request matching `method` and `path_contains` fail: "429" (with Retry-After),
        "500" (nothing written), "500-after" (written, then 500), "drop"/"drop-after" (connection closed
        without an answer, before/after the write)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(sorted(FAULTS))})")
        with self.lock:
            self.faults.append(Fault(fault, method, path_contains, retry_after))

    def activate_dnssec(self, zone_name: str) -> None:
        """The registrar published the DS: Cloudflare sees it and reports the zone's DNSSEC active."""
        with self.lock:
            zone = self.zone(zone_name)
            assert zone.dnssec["status"] == "pending", f"DNSSEC of {zone_name} is {zone.dnssec['status']}"
            zone.dnssec.update(status="active", modified_on=now())

    def dnskey(self, zone_name: str) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
        """The zone's key-signing key as a DNSKEY record (the DS the API reports is made from it)."""
        zone = self.zone(zone_name)
        assert zone.key, f"DNSSEC of {zone_name} was never enabled"
        return dns.dnssec.make_dnskey(zone.key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)

    @property
    def reads(self) -> int:
        return sum(n for k, n in self.requests.items() if k.startswith("GET "))

    @property
    def writes(self) -> int:
        return sum(n for k, n in self.requests.items() if not k.startswith("GET "))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    self.faults.remove(fault)
                    return fault
        return None

    # -- routing ------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[Any, dict | None]:
        """(result, result_info) of one authenticated request; ApiError otherwise."""
        parts = path.strip("/").split("/")
        if parts == ["zones"] and method == "GET":
            return self._list_zones(query)
        if len(parts) < 2 or parts[0] != "zones":
            raise ApiError(400, 7000, "No route for that URI")
        zone = self.zones.get(parts[1])
        if zone is None:
            raise ApiError(400, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
        rest = parts[2:]
        if not rest and method == "GET":
            return zone.json(), None
        if rest == ["dns_records"] and method == "GET":
            return self._list_records(zone, query)
        if rest == ["dns_records"] and method == "POST":
            return self._create(zone, zone.records, self._object(body)), None
        if rest == ["dns_records", "batch"] and method == "POST":
            return self._batch(zone, self._object(body)), None
        if len(rest) == 2 and rest[0] == "dns_records" and method in ("GET", "PATCH", "PUT", "DELETE"):
            return self._one_record(zone, rest[1], method, body), None
        if rest == ["dnssec"] and method in ("GET", "PATCH"):
            return self._dnssec(zone, self._object(body) if method == "PATCH" else None), None
        raise ApiError(400, 7000, "No route for that URI")

    @staticmethod
    def _object(body: Any) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, 9207, "Request body is invalid.")
        return body

    @staticmethod
    def _page(items: list, query: dict[str, str], bounds: tuple[int, int, int], cap: int | None) -> tuple[list, dict]:
        low, high, default = bounds
        try:
            page, per_page = int(query.get("page", 1)), int(float(query.get("per_page", default)))
        except ValueError:
            raise ApiError(400, 1001, "Invalid pagination parameters") from None
        if page < 1:
            raise ApiError(400, 1001, "page must be at least 1")
        if not low <= per_page <= high:
            raise ApiError(400, 1001, f"per_page must be between {low} and {high}")
        per_page = min(per_page, cap) if cap else per_page
        chunk = items[(page - 1) * per_page:page * per_page]
        return chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items),
                       "total_pages": math.ceil(len(items) / per_page)}

    def _list_zones(self, query: dict[str, str]) -> tuple[list, dict]:
        name = query.get("name", "").lower().rstrip(".")
        zones = [z.json() for z in self.zones.values() if not name or z.name == name]
        return self._page(zones, query, ZONES_PER_PAGE, None)

    def _list_records(self, zone: FakeZone, query: dict[str, str]) -> tuple[list, dict]:
        name = (query.get("name") or query.get("name.exact") or "").lower().rstrip(".")
        if name and name != zone.name and not name.endswith("." + zone.name):
            name = f"{name}.{zone.name}"
        found = [copy.deepcopy(r) for r in zone.records.values()
                 if (not name or r["name"] == name) and r["type"] == query.get("type", r["type"])
                 and r["content"] == query.get("content", r["content"])]
        return self._page(found, query, RECORDS_PER_PAGE, self.page_size_cap)

    def _one_record(self, zone: FakeZone, record_id: str, method: str, body: Any) -> dict:
        if record_id not in zone.records:
            raise ApiError(404, 81044, "Record does not exist.")
        if method == "GET":
            return copy.deepcopy(zone.records[record_id])
        if method == "DELETE":
            del zone.records[record_id]
            return {"id": record_id}
        records = dict(zone.records)  # a failed edit leaves the zone as it was
        updated = self._edit(zone, records, {**self._object(body), "id": record_id}, replace=method == "PUT")
        zone.records = records
        return updated

    def _batch(self, zone: FakeZone, body: dict) -> dict:
        """Cloudflare's documented order, in one transaction: any failure leaves the zone untouched."""
        records = copy.deepcopy(zone.records)
        done: dict[str, list] = {"deletes": [], "patches": [], "puts": [], "posts": []}
        for op in ("deletes", "patches", "puts", "posts"):
            items = body.get(op) or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ApiError(400, 9207, f"Request body is invalid: {op} must be a list of objects.")
            for item in items:
                if op == "posts":
                    done[op].append(self._create(zone, records, item))
                elif item.get("id") not in records:
                    raise ApiError(400, 81044, "Record does not exist.")
                elif op == "deletes":
                    done[op].append(records.pop(item["id"]))
                else:
                    done[op].append(self._edit(zone, records, item, replace=op == "puts"))
        zone.records = records
        return done

    # -- records ------------------------------------------------------------------------------------
    def _create(self, zone: FakeZone, records: dict[str, dict], body: dict) -> dict:
        stamp = now()
        record = self._valid(zone, {**body, "id": uuid.uuid4().hex, "created_on": stamp, "modified_on": stamp,
                                    "comment_modified_on": stamp if body.get("comment") else None})
        self._check_clashes(records, record)
        records[record["id"]] = record
        return copy.deepcopy(record)

    def _edit(self, zone: FakeZone, records: dict[str, dict], body: dict, replace: bool) -> dict:
        old = records[body["id"]]
        fields = {k: v for k, v in body.items() if k not in ("id", "created_on", "modified_on")}
        base = {k: old[k] for k in ("id", "created_on")} if replace else old
        record = self._valid(zone, {**base, **fields, "modified_on": now()})
        if record.get("comment") != old.get("comment"):
            record["comment_modified_on"] = record["modified_on"]
        self._check_clashes({k: v for k, v in records.items() if k != old["id"]}, record)
        records[old["id"]] = record
        return copy.deepcopy(record)

    @staticmethod
    def _check_clashes(records: dict[str, dict], record: dict) -> None:
        same_name = [r for r in records.values() if r["name"] == record["name"]]
        if record["type"] == "CNAME" and same_name:
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        if any(r["type"] == "CNAME" for r in same_name):
            raise ApiError(400, 81054, "A CNAME record with that host already exists.")
        if any(_meaning(r) == _meaning(record) for r in same_name):
            raise ApiError(400, 81058, "An identical record already exists.")

    @staticmethod
    def _valid(zone: FakeZone, record: dict) -> dict:
        """The record as stored, or the error Cloudflare gives for it."""
        rtype = str(record.get("type") or "").upper()
        if rtype not in TYPES:
            raise invalid(9008, "DNS record type is invalid.")
        name = str(record.get("name") or "").lower().rstrip(".")
        if name in ("", "@"):
            name = zone.name
        elif name != zone.name and not name.endswith("." + zone.name):
            name = f"{name}.{zone.name}"  # relative names are taken as inside the zone
        if not _HOST.match(name):
            raise invalid(9000, "DNS name is invalid.")
        ttl = record.get("ttl", TTL_AUTO)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or int(ttl) != ttl or \
                not (ttl == TTL_AUTO or TTL_MIN <= ttl <= TTL_MAX):
            raise invalid(9021, f"TTL must be between {TTL_MIN} and {TTL_MAX} seconds, or 1 for Automatic.")
        proxied = bool(record.get("proxied", False))
        if proxied and rtype not in PROXIABLE:
            raise invalid(9004, "This record type cannot be proxied.")
        comment = record.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
            raise invalid(9102, f"DNS record comment cannot be longer than {COMMENT_MAX} characters.")
        content = record.get("content")
        if rtype in DATA_TYPES:  # set through `data`; `content` is Cloudflare's rendering of it, read-only
            content = _from_data(rtype, record.get("data"))
            if rtype == "SRV" and record.get("priority") is None:  # an SRV's priority comes from its data
                record = {**record, "priority": record["data"]["priority"]}
        if content is None and rtype in HOST_TYPES | {"A", "AAAA", "TXT"}:
            raise invalid(9001, f"Content for {rtype} record is invalid.")
        content = "" if content is None else str(content)
        stored = {"id": record["id"], "name": name, "type": rtype, "content": _content(rtype, content),
                  "proxiable": rtype in PROXIABLE, "proxied": proxied, "ttl": int(ttl), "settings": {},
                  "meta": {}, "comment": comment, "tags": list(record.get("tags") or []),
                  "created_on": record["created_on"], "modified_on": record["modified_on"]}
        if record.get("comment_modified_on"):
            stored["comment_modified_on"] = record["comment_modified_on"]
        if rtype in ("MX", "SRV", "URI"):
            priority = record.get("priority")
            if isinstance(priority, bool) or not isinstance(priority, (int, float)) or int(priority) != priority \
                    or not 0 <= priority <= 65535:
                raise invalid(9100, f"Priority for {rtype} records must be a number between 0 and 65535.")
            stored["priority"] = int(priority)
        if record.get("data") is not None:
            stored["data"] = record["data"]
        return stored

    # -- DNSSEC -------------------------------------------------------------------------------------
    def _dnssec(self, zone: FakeZone, change: dict | None) -> dict:
        if change is not None:
            wanted = change.get("status")
            if wanted not in (None, "active", "disabled"):
                raise ApiError(400, 1007, "Invalid value for status: must be active or disabled")
            if wanted == "active" and zone.dnssec["status"] in ("disabled", "pending-disabled"):
                zone.key = zone.key or ec.generate_private_key(ec.SECP256R1())
                zone.dnssec.update(status="pending", modified_on=now())
            elif wanted == "disabled" and zone.dnssec["status"] != "disabled":
                zone.dnssec.update(status="disabled", modified_on=now())
        state = dict(zone.dnssec)
        if state["status"] in ("disabled",) or zone.key is None:
            return {"status": state["status"], "modified_on": state["modified_on"], "algorithm": None,
                    "digest": None, "digest_algorithm": None, "digest_type": None, "ds": None, "flags": None,
                    "key_tag": None, "key_type": None, "public_key": None, "dnssec_multi_signer": False,
                    "dnssec_presigned": False}
        key = self.dnskey(zone.name)
        ds = dns.dnssec.make_ds(zone.name + ".", key, "SHA256")
        digest = ds.digest.hex().upper()
        tag = dns.dnssec.key_id(key)
        return {**state, "algorithm": "13", "digest": digest, "digest_algorithm": "SHA256", "digest_type": "2",
                "ds": f"{zone.name}. 3600 IN DS {tag} 13 2 {digest}", "flags": 257, "key_tag": tag,
                "key_type": "ECDSAP256SHA256", "public_key": base64.b64encode(key.key).decode(),
                "dnssec_multi_signer": False, "dnssec_presigned": False}


def _from_data(rtype: str, data: Any) -> str:
    """The content Cloudflare shows for a CAA or TLSA record set through its `data`."""
    fields = DATA_TYPES[rtype]
    if not isinstance(data, dict) or set(data) != set(fields) or any(
            isinstance(data[f], bool) or not isinstance(data[f], int if kind is int else str)
            for f, kind in fields.items()):
        raise invalid(9101, f"Data for {rtype} record is invalid.")
    if rtype == "CAA":
        if not 0 <= data["flags"] <= 255 or not re.fullmatch(r"[A-Za-z0-9]+", data["tag"]) or '"' in data["value"]:
            raise invalid(9101, "Data for CAA record is invalid.")
        return f'{data["flags"]} {data["tag"]} "{data["value"]}"'
    if rtype == "SRV":  # content: weight, port, target (the priority is a field of its own)
        numbers = (data["weight"], data["port"], data["priority"])
        target = data["target"].lower().rstrip(".") or "."
        if not all(0 <= n <= 65535 for n in numbers) or not (target == "." or _HOST.match(target)):
            raise invalid(9101, "Data for SRV record is invalid.")
        return f"{data['weight']} {data['port']} {target}"
    numbers = (data["usage"], data["selector"], data["matching_type"])
    if not all(0 <= n <= 255 for n in numbers) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", data["certificate"]):
        raise invalid(9101, "Data for TLSA record is invalid.")
    return " ".join(map(str, numbers)) + " " + data["certificate"].lower()


def _content(rtype: str, content: str) -> str:
    """Check one value and store it as Cloudflare shows it (addresses compressed, host names without the dot)."""
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(content)
        except ValueError:
            address = None
        if address is None or address.version != (4 if rtype == "A" else 6):
            raise invalid(9005, f"Content for {rtype} record must be a valid IPv{4 if rtype == 'A' else 6} address.")
        return str(address)
    if rtype in HOST_TYPES:
        host = content.lower().rstrip(".")
        if not _HOST.match(host):
            raise invalid(9007 if rtype == "CNAME" else 9001, f"Content for {rtype} record is invalid.")
        return host
    if rtype == "TXT" and len(content) > TXT_MAX:
        raise invalid(9009, f"Content for TXT record is too long (at most {TXT_MAX} characters).")
    return content


def _meaning(record: dict) -> tuple:
    """What makes two records identical for Cloudflare: name, type, value (and priority)."""
    value: Any = txt_bytes(record["content"]) if record["type"] == "TXT" else record["content"]
    return record["name"], record["type"], value, record.get("priority"), json.dumps(record.get("data"),
                                                                                     sort_keys=True)


class _Handler(BaseHTTPRequestHandler):
    api: FakeCloudflare
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body are two writes: without this each answer waits ~40 ms
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counters, not logs
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = url.path.removeprefix(PREFIX)
        api = self.api
        with api.lock:
            api.requests[f"{self.command} {_route(path)}"] += 1
        fault = api.take_fault(self.command, path)
        if fault and fault.kind == "429":
            return self._send(429, _envelope(None, [{"code": 971, "message": "Please wait and consider throttling "
                                                                               "your request speed"}]),
                              {"Retry-After": fault.retry_after})
        if fault and fault.kind == "500":
            return self._send(500, _envelope(None, [{"code": 7001, "message": "Internal Error"}]))
        if fault and fault.kind == "drop":
            return self._drop()
        status, body = self._answer(path, url.query, raw)
        if fault and fault.kind == "500-after":
            return self._send(500, _envelope(None, [{"code": 7001, "message": "Internal Error"}]))
        if fault and fault.kind == "drop-after":
            return self._drop()
        self._send(status, body)

    def _answer(self, path: str, query_string: str, raw: bytes) -> tuple[int, dict]:
        auth = self.headers.get("Authorization", "")
        if not self.path.startswith(PREFIX):
            return 400, _envelope(None, [{"code": 7000, "message": "No route for that URI"}])
        if not re.match(r"^Bearer [A-Za-z0-9_.~+/=-]+$", auth):
            return 400, _envelope(None, [{"code": 6003, "message": "Invalid request headers", "error_chain": [
                {"code": 6111, "message": "Invalid format for Authorization header"}]}])
        if not secrets.compare_digest(auth[len("Bearer "):], self.api.token):
            return 403, _envelope(None, [{"code": 10000, "message": "Authentication error"}])
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, _envelope(None, [{"code": 6007, "message": "Malformed JSON in request body"}])
        query = {k: v[-1] for k, v in parse_qs(query_string).items()}
        try:
            with self.api.lock:
                result, info = self.api.route(self.command, path, query, body)
        except ApiError as exc:
            return exc.status, _envelope(None, [exc.error()])
        return 200, _envelope(result, [], info)

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close the connection without a word: the client cannot know whether the request was done."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _envelope(result: Any, errors: list[dict], info: dict | None = None) -> dict:
    body = {"success": not errors, "errors": errors, "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


def _route(path: str) -> str:
    """The path with ids replaced, for counting requests by endpoint."""
    return "/".join(":id" if _ID.match(p) else p for p in path.split("/"))
