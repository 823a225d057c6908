"""Which hosts mailhost converges: Debian 13 and 12 on amd64, read from the host; anything else is refused."""

import pytest

from roles._release import DebianRelease, HostRelease


def release(*lines: str) -> HostRelease:
    return DebianRelease().process(list(lines))


@pytest.mark.parametrize("version, major", [("13", 13), ("12", 12)])
def test_debian_13_and_12_on_amd64_are_supported(version, major):
    found = release("debian", version, f"Debian GNU/Linux {version}", "amd64")
    assert found.major == major and found.problem() is None


@pytest.mark.parametrize("lines, named", [
    (("debian", "11", "Debian GNU/Linux 11 (bullseye)", "amd64"), "Debian GNU/Linux 11 (bullseye)"),
    (("debian", "", "Debian GNU/Linux forky/sid", "amd64"), "Debian GNU/Linux forky/sid"),
    (("ubuntu", "24.04", "Ubuntu 24.04.3 LTS", "amd64"), "Ubuntu 24.04.3 LTS"),
    (("", "", "", "x86_64"), "an unknown system"),  # no /etc/os-release
    (("debian", "13", "Debian GNU/Linux 13 (trixie)", "arm64"), "architecture is arm64"),
])
def test_anything_else_is_refused_naming_what_was_found_and_what_is_supported(lines, named):
    problem = release(*lines).problem()
    assert problem and named in problem
    assert "amd64" in problem if "architecture" in named else "Debian 13 (trixie) or Debian 12 (bookworm)" in problem


def test_short_output_is_no_crash():
    assert release().problem()
