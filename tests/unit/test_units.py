"""The state of the roles' systemd units, read for all of them at once (`roles._units.UnitStates`)."""

from __future__ import annotations

import subprocess

import pytest

from roles._units import ENABLED, UNITS, UnitStates, enable_command

# `systemctl show --property=Id,ActiveState,UnitFileState ...` as a Debian 13 lab host answered it: a block per
# unit, a blank line between blocks.
SHOWN = """Id=postfix-mta-sts-resolver.service
ActiveState=active
UnitFileState=enabled

Id=certbot.timer
ActiveState=active
UnitFileState=enabled

Id=nftables.service
ActiveState=active
UnitFileState=disabled

Id=postsrsd.service
ActiveState=inactive
UnitFileState=

Id=systemd-timesyncd.service
ActiveState=inactive
UnitFileState=static
"""


@pytest.mark.parametrize("lines", [SHOWN.splitlines(), [line for line in SHOWN.splitlines() if line]],
                         ids=["as shown", "blank lines dropped"])
def test_each_unit_is_running_or_not_and_enabled_or_not(lines):
    assert UnitStates().process(lines) == {
        "postfix-mta-sts-resolver.service": (True, True),
        "certbot.timer": (True, True),  # a timer waiting for its time is active
        "nftables.service": (True, False),  # as a oneshot that exited (RemainAfterExit)
        "postsrsd.service": (False, False),  # not installed
        "systemd-timesyncd.service": (False, True),
    }


def test_the_command_names_every_unit_as_one_word():
    command = UnitStates().command(UNITS).get_raw_value()
    assert command.startswith("systemctl show --property=Id,ActiveState,UnitFileState ")
    assert command.split()[3:] == list(UNITS)
    assert all(u.endswith((".service", ".timer", ".socket")) for u in UNITS)


@pytest.mark.parametrize("state, enables", [("enabled", False), ("static", False), ("disabled", True), ("", True)])
def test_a_unit_its_package_enabled_meanwhile_is_not_enabled_again(tmp_path, state, enables):
    """(On Debian 12 enabling runs a SysV script's update-rc.d too: a second per unit on a fresh host.)"""
    fake = tmp_path / "systemctl"  # answers is-enabled with `state`, logs every other call
    fake.write_text(f'#!/bin/sh\n[ "$1" = is-enabled ] && {{ echo "{state}"; exit 0; }}; echo "$@" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    subprocess.run(["sh", "-c", enable_command("unbound.service").get_raw_value()], check=True,
                   env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    assert calls == ("enable --no-reload unbound.service\n" if enables else "")
    assert (state in ENABLED) is not enables
