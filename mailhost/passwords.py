"""Mailbox password hashes for Dovecot's passwd-file, computed on the controller.

A plaintext password (from an environment variable or a file named in the spec) never leaves
the controller: it is hashed here with SHA512-CRYPT. The salt is derived from the address alone, so the
same password gives the same hash on every run (the users file does not change, the deploy stays
idempotent) while no two mailboxes share a salt. Nothing of the password goes into the salt: the salt
is stored in the clear beside the hash, so a salt made from the password would let whoever reads the
users file test guesses at the speed of one SHA-256 instead of 100,000 rounds.

The hashing is libpass's (the maintained fork of passlib): the standard library's `crypt` is gone in
Python 3.13 (Debian 13), and libpass computes SHA512-CRYPT itself, byte for byte what glibc's crypt(3)
gives and Dovecot verifies, on every Python mailhost runs on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from passlib.hash import sha512_crypt as _sha512_crypt

from .spec import Mailbox

ROUNDS = 100_000
_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def read_password(box: Mailbox, base_dir: Path) -> str:
    if box.password_env:
        return os.environ[box.password_env]
    return (base_dir / box.password_file).read_text().rstrip("\n")


def sha512_crypt(password: str, address: str) -> str:
    digest = hashlib.sha256(f"mailhost-salt\0{address}".encode()).digest()
    salt = "".join(_SALT_CHARS[b % 64] for b in digest[:16])
    return "{SHA512-CRYPT}" + _sha512_crypt.using(rounds=ROUNDS, salt=salt).hash(password)


def password_hash(box: Mailbox, base_dir: Path) -> str:
    """The scheme-prefixed hash for `box` (given in the spec, or computed from its secret)."""
    if box.password_hash:
        return box.password_hash
    return sha512_crypt(read_password(box, base_dir), box.address)


__all__ = ["password_hash", "read_password", "sha512_crypt"]
