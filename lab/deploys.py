"""Run the project's `deploy.py` against lab hosts exactly as a user would (the pyinfra CLI),
and read pyinfra's results table so tests can assert "changed" / "no change"."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .hosts import TestHost

# The checkout the lab belongs to: the folder above it that holds deploy.py.
REPO = next(folder for folder in Path(__file__).resolve().parents if (folder / "deploy.py").is_file())


@dataclass
class OpResult:
    name: str
    success: int  # ran and changed something
    error: int
    no_change: int


@dataclass
class DeployResult:
    returncode: int
    output: str
    seconds: float
    operations: list[OpResult] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        """Operations that changed something on at least one host."""
        return [op.name for op in self.operations if op.success]

    @property
    def errors(self) -> list[str]:
        return [op.name for op in self.operations if op.error]

    def check(self) -> "DeployResult":
        if self.returncode != 0 or self.errors:
            raise AssertionError(f"pyinfra failed (exit {self.returncode}, errors in {self.errors}):\n"
                                 f"{self.failure_text()}")
        return self

    def failure_text(self, limit: int = 6000) -> str:
        """What explains a failure: the output without pyinfra's results table (which lists every operation
        and would push the error or the verify report out of sight), then the table's rows that erred."""
        before, table = self.output.split("--> Results:", 1) if "--> Results:" in self.output else (self.output, "")
        lines = before.splitlines()
        # The verify report's findings that are not ok (and the fix under each): a long report pushes them out.
        findings = [line for i, line in enumerate(lines) if re.match(r"\s+(error|warn|timeout)\s", line, re.I)
                    or (i and re.match(r"\s+fix:", line) and not re.match(r"\s+ok\s", lines[i - 1], re.I))]
        erred = "\n".join(f"    {op.name}: error" for op in self.operations if op.error)
        return (("--> Verify findings:\n" + "\n".join(findings) + "\n\n" if findings else "") + before[-limit:]
                + (f"\n--> Results (erred rows only):\n{erred}" if table else ""))


_ROW = re.compile(r"^\s{4}(?P<name>\S.*?)\s{2,}(?P<hosts>\d+|-)\s+(?P<success>\d+|-)\s+(?P<error>\d+|-)\s+"
                  r"(?P<nochange>\d+|-)\s*$")


def parse_results(output: str) -> list[OpResult]:
    """The rows of pyinfra's `--> Results:` table (without the grand total)."""
    if "--> Results:" not in output:
        return []
    table = output.split("--> Results:", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        m = _ROW.match(line)
        if m and m["name"].strip() != "Grand total":
            n = lambda v: 0 if v == "-" else int(v)  # noqa: E731
            rows.append(OpResult(m["name"].strip(), n(m["success"]), n(m["error"]), n(m["nochange"])))
    return rows


HostData = dict | Callable[[TestHost], dict]


def inventory_file(hosts: list[TestHost], data: HostData, directory: Path) -> Path:
    """A pyinfra inventory file for `hosts`; `data` (or `data(host)`) goes over the connection data."""
    entries = []
    for host in hosts:
        address, host_data = host.inventory()
        entries.append((address, {**host_data, **(data(host) if callable(data) else data)}))
    path = directory / "lab_inventory.py"
    # Like a user's inventory, it validates each host's spec before pyinfra connects.
    path.write_text("import json\nfrom mailhost.spec import load_spec\n"
                    "lab = [tuple(entry) for entry in json.loads(" + repr(json.dumps(entries)) + ")]\n"
                    "for _address, _data in lab:\n    if 'spec' in _data:\n        load_spec(_data['spec'])\n")
    return path


def run_deploy(hosts: list[TestHost], data: HostData | None = None, *, dry: bool = False,
               deploy: str = "deploy.py", timeout: float = 1800) -> DeployResult:
    """`pyinfra <inventory> deploy.py` from the repository root; returns the parsed result."""
    with tempfile.TemporaryDirectory(prefix="mailhost-inv-") as tmp:
        inventory = inventory_file(hosts, data or {}, Path(tmp))
        argv = [str(Path(sys.executable).with_name("pyinfra")), str(inventory), deploy]
        argv += ["--dry"] if dry else ["-y"]
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    return DeployResult(proc.returncode, output, seconds, parse_results(output))
