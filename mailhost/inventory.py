"""Helpers for inventory files: each mail host names its spec, validated before pyinfra connects."""

from __future__ import annotations

from pathlib import Path

from .spec import load_spec


def mail_host(address: str, spec: str | Path, **data) -> tuple[str, dict]:
    """An inventory entry `(address, data)` for a host converged from `spec`.

    The spec is validated here, while pyinfra loads the inventory: a bad spec stops the run
    with its field paths before any connection is made.
    """
    load_spec(spec)
    return (address, {"spec": str(Path(spec).resolve()), **data})
