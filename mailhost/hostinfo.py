"""What the host tells, as shell commands and their parsers: shared by the pyinfra facts of the deploy
and by `mailhost verify` over SSH, so both read the host the same way."""

from __future__ import annotations

DKIM_KEY_DIR = "/etc/mailhost/dkim"  # <domain>/<selector>.rsa (PEM) and <selector>.ed25519 (rspamd's format)
DKIM_ALGORITHMS = ("rsa", "ed25519")
DKIM_KEY_OWNER = "_rspamd"  # the Debian rspamd package's user: its workers sign


def dkim_key_path(domain: str, selector: str, algorithm: str) -> str:
    return f"{DKIM_KEY_DIR}/{domain}/{selector}.{algorithm}"


def dkim_public_path(domain: str, selector: str, algorithm: str) -> str:
    """Where the key's public half is kept (`DKIM_PUBLIC_KEYS`)."""
    return dkim_key_path(domain, selector, algorithm) + ".pub"


# The public half of key file "$k" of algorithm "$a", as the DKIM record's p= tag has it. RSA: the
# SubjectPublicKeyInfo. Ed25519: the file is base64 of the 32-byte seed and the 32-byte public key (what rspamd
# loads); DKIM publishes the raw public key (RFC 8463 4.2).
DKIM_PUBLIC_HALF = ('case "$a" in rsa) openssl pkey -in "$k" -pubout -outform DER;; '
                    '*) base64 -d "$k" | tail -c 32;; esac | base64 -w0')
# Each key's public half is kept beside it when made (`<selector>.<algorithm>.pub`): read with the shell's
# own `read`, where working it out takes three or four processes a key (a second of a 100-domain no-op).
# A key without one, or changed since (newer than it), is worked out anew.
DKIM_PUBLIC_KEYS = (
    f"for k in {DKIM_KEY_DIR}/*/*.rsa {DKIM_KEY_DIR}/*/*.ed25519; do [ -f \"$k\" ] || continue; "
    "d=${k%/*}; d=${d##*/}; f=${k##*/}; a=${f##*.}; printf '%s %s %s ' $d ${f%.*} $a; "
    "if [ -f \"$k.pub\" ] && ! [ \"$k\" -nt \"$k.pub\" ]; then read -r p < \"$k.pub\"; echo \"$p\"; "
    f"else {DKIM_PUBLIC_HALF}; echo; fi; done")


def parse_dkim_public_keys(lines: list[str]) -> dict[tuple[str, str, str], str]:
    """{(domain, selector, algorithm): base64 public key, as the DKIM record's p= tag has it} of every key on
    the host (a selector whose algorithm the spec changed may have a key of each)."""
    keys = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[2] in DKIM_ALGORITHMS:
            keys[(parts[0], parts[1], parts[2])] = parts[3]
    return keys


# rspamd's listeners: the milter Postfix talks to, and the controller (`rspamc learn_*`), loopback only.
RSPAMD_MILTER, RSPAMD_CONTROLLER = "127.0.0.1:11332", "127.0.0.1:11334"


def rspamd_answers(controller: bool, seconds: int = 600) -> str:
    """A command that waits until rspamd listens (it loads for seconds after a start, minutes on an emulated or
    very small host): signing, and with it submissions, wait for it. Fails when it does not within `seconds`."""
    ports = [RSPAMD_MILTER] + ([RSPAMD_CONTROLLER] if controller else [])
    return (f"timeout {int(seconds)} sh -c 'until " + " && ".join(f"ss -Hltn | grep -q \"{p} \"" for p in ports)
            + "; do sleep 0.2; done'")

# Receivers' MTA-STS policies (roles/mta_sts_resolver): Postfix asks a socket systemd holds on MTA_STS_PORT; the
# first question starts postfix-mta-sts-resolver on MTA_STS_RESOLVER_PORT, and a proxy between the two.
MTA_STS_PORT, MTA_STS_RESOLVER_PORT = 8461, 8462
MTA_STS_POLICY_MAP = f"socketmap:inet:127.0.0.1:{MTA_STS_PORT}:postfix"
MTA_STS_SOCKET = "mailhost-mta-sts.socket"  # the unit the role writes and verify finds active

# postsrsd's two Postfix tcp tables (roles/postsrsd): an outside sender -> its SRS address, and back.
SRS_FORWARD_PORT, SRS_REVERSE_PORT = 10001, 10002
SRS_FORWARD_TABLE, SRS_REVERSE_TABLE = (f"tcp:127.0.0.1:{port}" for port in (SRS_FORWARD_PORT, SRS_REVERSE_PORT))

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
