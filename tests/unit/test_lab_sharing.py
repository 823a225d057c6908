"""The lab shared by test sessions running side by side (`./dev test`'s two lanes): the first one in starts it,
the last one out takes it down, and a session that was killed does not keep it up for good. The lab's own
start and stop are counted here, not run (the end-to-end suite runs them)."""

from __future__ import annotations

import subprocess

import pytest

from lab import Lab, LabConfig, procs


@pytest.fixture
def lab(tmp_path, monkeypatch):
    lab = Lab(LabConfig(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"))
    calls: list[str] = []
    running = {"up": False}
    monkeypatch.setattr(lab, "up", lambda: (calls.append("up"), running.update(up=True)))
    monkeypatch.setattr(lab, "down", lambda: (calls.append("down"), running.update(up=False)))
    monkeypatch.setattr(lab, "is_up", lambda: running["up"])
    lab.calls = calls
    return lab


def another_session(lab: Lab) -> subprocess.Popen:
    """A live process registered as a user of the lab, as the other lane's pytest is."""
    other = subprocess.Popen(["sleep", "60"])
    (lab.cfg.state_dir / "users").mkdir(parents=True, exist_ok=True)
    (lab.cfg.state_dir / "users" / f"{other.pid}.{procs.start_time(other.pid)}").touch()
    return other


def test_the_first_session_starts_the_lab_fresh_and_the_last_takes_it_down(lab):
    lab.join()
    assert lab.calls == ["down", "up"]  # whatever an earlier run left is cleared first
    other = another_session(lab)
    try:
        assert lab.leave() is False and lab.calls == ["down", "up"]  # the other lane still uses it
        lab.join()
        assert lab.calls == ["down", "up"]  # found running
    finally:
        other.kill()
        other.wait()
    assert lab.leave() is True and lab.calls == ["down", "up", "down"]


def test_a_killed_session_does_not_count(lab):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (lab.cfg.state_dir / "users").mkdir(parents=True)
    (lab.cfg.state_dir / "users" / f"{dead.pid}.12345").touch()
    lab.join()
    assert lab.calls == ["down", "up"]
    assert lab.leave() is True and [p.name for p in (lab.cfg.state_dir / "users").iterdir()] == []
