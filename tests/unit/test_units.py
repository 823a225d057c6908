"""The state of the roles' systemd units, read for all of them at once (`roles._units.UnitStates`)."""

from __future__ import annotations

import pytest

from roles._units import UNITS, UnitStates

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
