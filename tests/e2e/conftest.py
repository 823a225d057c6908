"""End-to-end tests resolve lab names the way lab hosts do: through the lab's DNS."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(autouse=True)
def lab_name_resolution(request, monkeypatch):
    """Names under the lab's parent zone (`*.test`) resolve through the lab resolver, others as usual."""
    if "lab" not in request.fixturenames:
        return
    lab = request.getfixturevalue("lab")
    parent = lab.cfg.parent_zone.rstrip(".")
    original = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and (host == parent or host.endswith("." + parent)):
            host = lab.dns.resolve(host, "A")[0].address
        return original(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
