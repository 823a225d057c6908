"""What the host tells, as shell commands and their parsers: shared by the pyinfra facts of the deploy
and by `mailhost verify` over SSH, so both read the host the same way."""

from __future__ import annotations

DKIM_KEY_DIR = "/etc/opendkim/keys"

DKIM_PUBLIC_KEYS = (
    f"for k in {DKIM_KEY_DIR}/*/*.private; do [ -f \"$k\" ] || continue; "
    "d=$(basename $(dirname $k)); s=$(basename $k .private); "
    "printf '%s %s ' $d $s; openssl pkey -in $k -pubout -outform DER | base64 -w0; echo; done")


def parse_dkim_public_keys(lines: list[str]) -> dict[tuple[str, str], str]:
    """{(domain, selector): base64 SubjectPublicKeyInfo} of every key on the host."""
    keys = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            keys[(parts[0], parts[1])] = parts[2]
    return keys


TLS_LIVE_DIR = "/etc/letsencrypt/live"

TLS_PUBLIC_KEYS = (
    f"for k in {TLS_LIVE_DIR}/*/privkey.pem; do [ -f \"$k\" ] || continue; "
    "printf '%s ' $(basename $(dirname $k)); openssl pkey -in $k -pubout -outform DER | base64 -w0; echo; done")


def parse_tls_public_keys(lines: list[str]) -> dict[str, str]:
    """{certificate name (the host name): base64 SubjectPublicKeyInfo of its key}."""
    return {parts[0]: parts[1] for parts in (line.split() for line in lines) if len(parts) == 2}


# The source address of each default route, else (a host without one, like the lab's) the first global
# address of that family.
PUBLIC_ADDRESSES = (
    "for f in -4 -6; do ip -o $f route get $([ $f = -4 ] && echo 192.0.2.1 || echo 2001:db8::1) "
    "2>/dev/null | sed -n 's/.* src \\([^ ]*\\).*/\\1/p' | grep . || "
    "ip -o $f addr show scope global | awk '{split($4, a, \"/\"); print a[1]; exit}'; done")


def parse_public_addresses(lines: list[str]) -> tuple[str, ...]:
    return tuple(line.strip() for line in lines if line.strip())
