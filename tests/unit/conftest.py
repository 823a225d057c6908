"""Fixtures shared by the verify tests: the test CA and local TLS/SMTP servers (defined with the TLS tests)."""

from test_verify_tls import closed_port, pki, silent_port, smtp_server  # noqa: F401

__all__ = ["closed_port", "pki", "silent_port", "smtp_server"]  # fixtures pytest finds here (and pyflakes)
