"""Value checks: each turns a raw YAML value into a checked one or raises ValueError whose text says what is
wrong (the loader puts the field path in front). Every string ends up in a file or a command, so each check
is a whole-string match, and messages quote values cut short. In the model a check stands in `Annotated`
beside its type, and is the whole of that field's validation (and its JSON Schema)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic_core import core_schema


class SpecError(ValueError):
    """The spec is invalid; `.problems` lists (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec"):
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" if path else f"  {msg}" for path, msg in problems)
        super().__init__(f"{source} is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: repr, cut short (a message never repeats a huge value)."""
    return cut(repr(value), limit)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def control_free(value: str) -> bool:
    """No control characters (line breaks, NUL, escapes): every string ends up in a file or a command."""
    return not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c in "\u2028\u2029" for c in value)


class Check:
    schema: dict = {}

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict:
        return dict(self.schema)


class Text(Check):
    """Any string without control characters (a file name, an SPF record, a profile name)."""
    schema = {"type": "string"}

    def __call__(self, value):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {shown(value)}")
        if not control_free(value):
            raise ValueError(f"{shown(value)} holds a line break or another control character")
        return value


class OneOf(Check):
    """One of a few values, of exactly their type (2048.0 is not 2048, true is not 1)."""

    def __init__(self, *choices: Any):
        self.choices = choices
        self.schema = {"enum": list(choices)}

    def __call__(self, value):
        if not any(type(value) is type(choice) and value == choice for choice in self.choices):
            raise ValueError(f"{shown(value)} is not one of {', '.join(repr(c) for c in self.choices)}")
        return value


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _domain(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{shown(value)} is not a valid {what}: expected a string")
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError(f"{shown(value)} is not a valid {what}")
    return name


class DomainName(Check):
    schema = {"type": "string", "format": "hostname", "pattern": r"^[A-Za-z0-9.-]+\.?$"}

    def __call__(self, value):
        return _domain(value, "domain name")


class Hostname(Check):
    schema = DomainName.schema

    def __call__(self, value):
        return _domain(value, "fully qualified host name (e.g. mail.example.org)")


class Email(Check):
    schema = {"type": "string", "format": "email"}

    def __call__(self, value):
        if not isinstance(value, str) or value.count("@") != 1:
            raise ValueError(f"{shown(value)} is not a valid email address")
        local, domain = value.split("@")
        # RFC 5321's dot-atom, at most 64 octets; no leading '#' (a comment line in Postfix's maps).
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", local) or local.startswith((".", "#")) \
                or local.endswith(".") or ".." in local:
            raise ValueError(f"{shown(value)} is not a valid email address (local part: at most 64 letters, digits "
                             "and !#$%&'*+/=?^_`{|}~.-, not starting with '#' or '.')")
        try:
            return f"{local.lower()}@{_domain(domain, 'domain name')}"
        except ValueError:
            raise ValueError(f"{shown(value)} is not a valid email address (domain)") from None


class AliasSource(Check):
    """An address, or `@domain` for a catch-all."""
    schema = {"type": "string", "pattern": r"^[^@\s]*@[A-Za-z0-9.-]+$"}

    def __call__(self, value):
        if isinstance(value, str) and value.startswith("@"):
            return "@" + _domain(value[1:], "domain name")
        return Email()(value)


class Size(Check):
    """Bytes, or a number with K, M, G (powers of 1024)."""
    schema = {"type": ["string", "integer"], "pattern": r"^[0-9]+[KMGkmg]?$"}

    MAX = 2 ** 50  # a petabyte: beyond any mailbox or message, and within every daemon's integers

    def __call__(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        else:
            m = re.fullmatch(r"([0-9]{1,16})\s*([KMG]?)i?B?", str(value).strip(), re.I)
            size = int(m[1]) * 1024 ** " KMG".index((m[2] or " ").upper()) if m and not isinstance(value, bool) else 0
        if not 0 < size <= self.MAX:
            raise ValueError(f"{shown(value)} is not a size (use e.g. 25M, 2G or a number of bytes)")
        return size


class Duration(Check):
    """Seconds, or a number with s, m, h, d, w."""
    schema = {"type": ["string", "integer"], "pattern": r"^[0-9]+[smhdw]?$"}

    MAX = 2 ** 31 - 1  # DNS TTLs (RFC 2181) and Fail2Ban's times are 31-bit

    def __call__(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        else:
            m = re.fullmatch(r"([0-9]{1,12})([smhdw]?)", str(value).strip())
            seconds = int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]] \
                if m and not isinstance(value, bool) else 0
        if not 0 < seconds <= self.MAX:
            raise ValueError(f"{shown(value)} is not a duration (use e.g. 10m, 1h, 7d or seconds, "
                             f"at most {self.MAX})")
        return seconds


class IntRange(Check):
    """A whole number from `minimum` to `maximum` (true and false are not numbers here)."""

    def __init__(self, minimum: int, maximum: int, what: str):
        self.minimum, self.maximum, self.what = minimum, maximum, what
        self.schema = {"type": "integer", "minimum": minimum, "maximum": maximum}

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise ValueError(f"{shown(value)} is not {self.what}")
        return value


class Port(IntRange):
    def __init__(self):
        super().__init__(1, 65535, "a port number (1-65535)")


class Count(IntRange):
    def __init__(self, minimum: int):
        super().__init__(minimum, 2 ** 31 - 1, f"a whole number from {minimum}")


class Percent(IntRange):
    def __init__(self):
        super().__init__(0, 100, "a percentage (0-100)")


class IPAddress(Check):
    def __init__(self, version: int):
        self.version = version
        self.schema = {"type": "string", "format": f"ipv{version}"} if version else {"type": "string"}

    def __call__(self, value):
        if "%" in str(value):
            raise ValueError(f"{shown(value)}: a scope id (%...) means nothing outside one host's links")
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError:
            raise ValueError(f"{shown(value)} is not an IP{f'v{self.version}' if self.version else ''} address") from None
        if self.version and address.version != self.version:
            raise ValueError(f"{shown(value)} is not an IPv{self.version} address")
        return str(address)


class Network(Check):
    schema = {"type": "string"}

    def __call__(self, value):
        if "%" in str(value):
            raise ValueError(f"{shown(value)}: a scope id (%...) means nothing outside one host's links")
        try:
            return str(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise ValueError(f"{shown(value)} is not an address or network (e.g. 192.0.2.0/24)") from None


class HttpsUrl(Check):
    schema = {"type": "string", "format": "uri", "pattern": "^https://"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"https://[!-.0-~]+(/[!-~]*)?", value):
            raise ValueError(f"{shown(value)} is not an https:// URL")
        return value


class PasswordHash(Check):
    """A Dovecot password hash with its scheme prefix, e.g. {ARGON2ID}$argon2id$... or {SHA512-CRYPT}$6$..."""
    schema = {"type": "string", "pattern": r"^\{[A-Z0-9.-]+\}[A-Za-z0-9./$=,+-]+$"}
    STRONG = ("ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT")

    def __call__(self, value):
        m = re.fullmatch(r"\{([A-Z0-9.-]+)\}([A-Za-z0-9./$=,+-]+)", value) if isinstance(value, str) else None
        if not m:  # the value is not shown: it may be a password typed in the wrong field
            raise ValueError("is not a password hash: expected {SCHEME}hash as printed by `doveadm pw` (letters, "
                             "digits and ./$=,+- after the scheme)")
        if m[1] not in self.STRONG:
            raise ValueError(f"scheme {m[1]} is too weak; use one of {', '.join(self.STRONG)}")
        return value


class EnvName(Check):
    schema = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(self.schema["pattern"], value):
            # Not shown: a password or token typed here instead of the variable's name would be printed.
            raise ValueError("is not an environment variable name (letters, digits and _): it names the variable "
                             "that holds the secret, not the secret itself")
        return value


class DnsLabel(Check):
    schema = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,62}$"}

    def __call__(self, value):
        if not isinstance(value, str) or not _LABEL.fullmatch(value.lower()):
            raise ValueError(f"{shown(value)} is not a DNS label (letters, digits, '-')")
        return value.lower()


class Url(Check):
    """http(s) URL: API endpoints may be local (tests, proxies), so http is allowed here."""
    schema = {"type": "string", "format": "uri", "pattern": "^https?://"}

    def __call__(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"https?://[!-.0-~]+(/[!-~]*)?", value):
            raise ValueError(f"{shown(value)} is not an http(s):// URL")
        return value.rstrip("/")


class RecordKey(Check):
    """`NAME TYPE` of a record set, e.g. `example.org MX`."""
    schema = {"type": "string", "pattern": r"^\S+\s+[A-Za-z0-9]+$"}

    def __call__(self, value):
        parts = value.split() if isinstance(value, str) else []
        if len(parts) != 2 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", parts[1]):
            raise ValueError(f"{shown(value)} is not 'NAME TYPE' (e.g. 'example.org MX')")
        name = parts[0].lower().rstrip(".")
        if not all(re.fullmatch(r"\*|_?[a-z0-9-]{1,62}", label) for label in name.split(".")) or "." not in name:
            raise ValueError(f"{shown(value)}: {shown(parts[0])} is not a record name")
        return f"{name.lower().rstrip('.')} {parts[1].upper()}"
