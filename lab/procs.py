"""Start lab daemons detached, and stop them for certain.

Every daemon gets a cgroup of its own (cgroup v2 `unified` plus the v1 `name=systemd`
hierarchy that systemd-nspawn insists on), so teardown can kill the whole tree with
`cgroup.kill` and remove the directories, even after the launching process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
CGROUP_PARENT = "mailhost-lab"


class LabError(RuntimeError):
    """Something the lab needs is missing or broke; the message says what."""


def run(argv: list[str], *, check: bool = True, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a short command; on failure raise with its stderr in the message."""
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def _cgroup_dirs(name: str) -> list[Path]:
    roots = [r for r in CGROUP_ROOTS if r.is_dir()]
    if not roots:  # a pure cgroup v2 machine
        roots = [Path("/sys/fs/cgroup")]
    return [r / CGROUP_PARENT / name for r in roots]


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot): with the pid, names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Daemon:
    """A running lab process, identified by pid *and* start time (pids get reused)."""

    name: str
    pid: int
    start_time: int
    log: str

    def alive(self) -> bool:
        return start_time(self.pid) == self.start_time

    def to_json(self) -> dict:
        return asdict(self)


def spawn(name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None,
          netns: str | None = None, cwd: Path | None = None) -> Daemon:
    """Start `argv` detached, in cgroup `mailhost-lab/<name>` (and netns if given)."""
    cgroups = _cgroup_dirs(name)
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]

    def enter_cgroups() -> None:
        for cg in cgroups:
            (cg / "cgroup.procs").write_text("0")

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            preexec_fn=enter_cgroups,
        )
    start = start_time(proc.pid)
    if start is None:
        raise LabError(f"{name}: exited at once; see {log}")
    return Daemon(name=name, pid=proc.pid, start_time=start, log=str(log))


def cgroup_pids(name: str) -> list[int]:
    pids: set[int] = set()
    for cg in _cgroup_dirs(name):
        for procs in cg.rglob("cgroup.procs") if cg.is_dir() else []:
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
    return sorted(pids)


def stop(name: str, daemon: Daemon | None = None, *, grace: float = 5.0) -> None:
    """Stop a daemon and everything it started, then remove its cgroups.

    SIGTERM to the main process first (named, pebble... exit cleanly), then
    `cgroup.kill` / SIGKILL for whatever is left, including container payloads.
    """
    if daemon and daemon.alive():
        try:
            os.kill(daemon.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while daemon.alive() and time.monotonic() < deadline:
            _reap(daemon.pid)
            time.sleep(0.05)
    for cg in _cgroup_dirs(name):
        kill = cg / "cgroup.kill"
        if kill.exists():
            try:
                kill.write_text("1")
            except OSError:
                pass
    for pid in cgroup_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while cgroup_pids(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap(daemon.pid if daemon else -1)
    for cg in _cgroup_dirs(name):
        remove_cgroup(cg)


def _reap(pid: int) -> None:
    """Collect exit statuses: of `pid`, and of every orphan handed to us as subreaper."""
    for target in (pid, -1):
        try:
            while os.waitpid(target, os.WNOHANG)[0] > 0 and target == -1:
                pass
        except ChildProcessError:
            pass


def become_subreaper() -> None:
    """Adopt orphaned descendants (e.g. nspawn after its loop shell is killed) so they get reaped.

    Some sandboxes run an init that never reaps; without this, killed containers linger as zombies.
    """
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def remove_cgroup(cg: Path) -> None:
    """Remove a cgroup directory tree bottom-up (cgroupfs only allows rmdir)."""
    if not cg.is_dir():
        return
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        cg.rmdir()
    except OSError:
        pass


def remove_parent_cgroups() -> None:
    """Remove the empty `mailhost-lab` cgroups once every daemon is gone."""
    for root in CGROUP_ROOTS:
        remove_cgroup(root / CGROUP_PARENT)


def leftover_cgroups() -> list[Path]:
    return [r / CGROUP_PARENT / c.name for r in CGROUP_ROOTS if (r / CGROUP_PARENT).is_dir()
            for c in (r / CGROUP_PARENT).iterdir() if c.is_dir()]


def wait_until(what: str, predicate, timeout: float, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; raise LabError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - remembered for the error message
            last_error = exc
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}"
                   + (f" (last error: {last_error})" if last_error else ""))
