"""Resident memory of the mail stack, run ON the host as root (stdlib only; `converge.py` pipes it in).

    python3 - postfix@- dovecot rspamd ... < stack_memory.py
    -> "<RSS summed> <PSS summed> <resident set>" in KiB, then one "unit <PSS> <resident set> <unit>" line a
       unit (what each service costs: its share, and what it maps alone or not), then one "<RSS> <PSS> <command>"
       line a process

Three figures, because summing per-process RSS counts a shared physical page once per process that maps
it: rspamd forks its workers from a main process that holds its ~36 MB Lua heap, so that heap is in
all three processes' RSS, and every process counts libc again. The stack's resident set counts each
physical page the stack's processes map once (frame numbers from /proc/PID/pagemap), which is the
memory the stack holds; PSS splits each shared page between its processes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63
FRAME = (1 << 55) - 1


def unit_pids(unit: str) -> list[int]:
    """Every process in the unit's own cgroup (postfix@- lives in a slice, so ask systemd where)."""
    cgroup = subprocess.run(["systemctl", "show", "-p", "ControlGroup", "--value", unit],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        with open(f"/sys/fs/cgroup{cgroup}/cgroup.procs") as procs:
            return [int(pid) for pid in procs.read().split()]
    except OSError:
        return []


def rss_pss(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process in KiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, value = line.split()[:2]
            values[name] = value
    return int(values["Rss:"]), int(values["Pss:"])


def frames(pid: int) -> set[int]:
    """The physical frames a process has resident (root sees frame numbers; others read zeros)."""
    resident = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            if line.rstrip().endswith("[vsyscall]"):
                continue  # not readable through pagemap
            low, high = (int(address, 16) for address in line.split()[0].split("-"))
            pagemap.seek(low // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", pagemap.read((high - low) // PAGE * 8)):
                if entry & PRESENT:
                    resident.add(entry & FRAME)
    return resident


def command(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:60]


def main(units: list[str]) -> None:
    rows, union, per_unit = [], set(), []
    for unit in units:
        unit_frames, unit_pss = set(), 0
        for pid in unit_pids(unit):
            try:
                rss, pss = rss_pss(pid)
                unit_frames |= frames(pid)
                rows.append((rss, pss, command(pid)))
                unit_pss += pss
            except (OSError, KeyError):
                continue  # the process ended meanwhile
        union |= unit_frames
        per_unit.append((unit_pss, len(unit_frames) * PAGE // 1024, unit))
    if 0 in union:
        sys.exit("stack_memory: /proc/PID/pagemap hides frame numbers; run as root")
    print(sum(r[0] for r in rows), sum(r[1] for r in rows), len(union) * PAGE // 1024)
    for pss, resident, unit in sorted(per_unit, reverse=True):
        print("unit", pss, resident, unit)
    for rss, pss, cmd in sorted(rows, reverse=True):
        print(rss, pss, cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
