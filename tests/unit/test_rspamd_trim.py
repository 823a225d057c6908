"""rspamd-trim, the script that pages rspamd's Hyperscan databases out of its main process
(`roles/rspamd/templates/usr/local/lib/mailhost/rspamd-trim.j2`), run here on this process's own mappings: the
same kernel calls as on a host (process_madvise MADV_PAGEOUT needs root's CAP_SYS_NICE, which the tests have)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from roles._config import template_path
import roles.rspamd

SCRIPT = Path(template_path(roles.rspamd.__file__, roles.rspamd.TRIM))
MB = 1024 * 1024


@pytest.fixture
def trim(tmp_path) -> types.ModuleType:
    """The script as a module, reading `tmp_path`/rspamd as rspamd's data directory."""
    module = types.ModuleType("rspamd_trim")
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), module.__dict__)  # a plain script: no template syntax
    (tmp_path / "rspamd").mkdir()
    module.DATA = f"{tmp_path}/rspamd/"
    return module


def mapped_database(directory: Path, size: int, writable: bool = False) -> mmap.mmap:
    """A file of `size` bytes, just written, mapped shared and read whole, as Hyperscan's scratch allocation
    reads a database. (Here its pages are paged out even without `written_out`; a database rspamd compiled
    moments before on a lab host was not: that case is proven end to end, test_mailhost.py.)"""
    path = directory / ("db.rrd" if writable else "db.hsmp.unser")
    path.write_bytes(os.urandom(size))
    with open(path, "r+b" if writable else "rb") as file:
        view = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
    sum(view[offset] for offset in range(0, size, mmap.PAGESIZE))  # fault every page in
    return view


def test_the_pages_of_a_database_the_process_read_are_paged_out(trim, tmp_path):
    view = mapped_database(tmp_path / "rspamd", 16 * MB)
    ranges, resident, files = trim.mapped(os.getpid())
    assert files == {str(tmp_path / "rspamd" / "db.hsmp.unser")}
    assert sum(high - low for low, high in ranges) == 16 * MB
    assert resident >= 15 * 1024  # kB: read whole, resident whole
    before, after = trim.release(os.getpid())
    assert (before, after < 1024) == (resident, True)
    assert trim.mapped(os.getpid())[1] == after
    assert view[12345] == view[12345]  # still readable: paged in again from the file
    view.close()


def test_writable_mappings_and_other_directories_are_left_alone(trim, tmp_path):
    views = [mapped_database(tmp_path / "rspamd", MB, writable=True), mapped_database(tmp_path, MB)]
    assert trim.mapped(os.getpid()) == ([], 0, set())  # rspamd's rrd file (written through its mapping) is not ours
    for view in views:
        view.close()


def test_it_waits_for_a_worker_forked_after_it_began(trim):
    marker = subprocess.Popen(["sleep", "30"])  # a clock reading in /proc's ticks: its start time
    since = trim.started(str(marker.pid))[1]
    marker.kill()
    marker.wait()
    assert not trim.has_new_worker(os.getpid(), since)  # the lab's daemons, children of pytest, began before
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert trim.has_new_worker(os.getpid(), since)
        assert not trim.has_new_worker(os.getpid(), trim.started(str(child.pid))[1] + 1)  # began before
    finally:
        child.kill()
        child.wait()


def test_it_never_fails_rspamd_s_start(tmp_path):
    """A main process that is gone: a line in the journal, exit 0 (so is any OSError, e.g. a kernel before
    5.10 without process_madvise)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    result = subprocess.run([sys.executable, "-I", str(SCRIPT), str(gone.pid)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    assert result.stdout == f"process {gone.pid} ended; nothing paged out\n"
