"""mailhost run from a Debian 13 controller, with that release's own Python (3.13: no `crypt` module): the unit
suite passes there, and a deploy driven from there converges a fresh host and verifies it green."""

from __future__ import annotations

import re

import pytest

from lab import controller
from lab.deploys import inventory_file, parse_results
from lab.mailenv import make_mail_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def debian13_controller(lab):
    host = lab.new_host("ctl13", release="trixie")
    project = controller.install_mailhost(lab.cfg, host)
    yield host, project
    lab.remove_host(host.name)


def test_the_controller_runs_debian_13s_own_python(debian13_controller):
    host, project = debian13_controller
    assert host.ssh(f"{project}/.venv/bin/python --version").stdout.startswith("Python 3.13.")
    missing = host.ssh(f"{project}/.venv/bin/python -c 'import crypt'", check=False)
    assert "No module named 'crypt'" in missing.stderr  # what made mailhost unusable on Debian 13 before


def test_the_unit_suite_passes_under_python_3_13(debian13_controller):
    host, project = debian13_controller
    run = host.ssh(f"cd {project} && .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit", check=False,
                   timeout=900)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed[1]) > 300 and "skipped" not in summary, summary


def test_a_deploy_driven_from_debian_13_converges_and_verifies(lab, fresh_host, debian13_controller, tmp_path):
    ctl, project = debian13_controller
    target = fresh_host()
    env = make_mail_env(lab, target, tmp_path / "site", domains=1)
    inventory = inventory_file([target], {"spec": str(env.spec_path)}, tmp_path)
    # The spec's files, the lab's CA bundle and TSIG key and its SSH key, at the paths the spec names.
    controller.copy_paths(ctl, [tmp_path, lab.ca_bundle, lab.dns.tsig_file, lab.ssh_key])
    deploy = ctl.ssh(f"cd {project} && .venv/bin/pyinfra -y {inventory} deploy.py 2>&1", check=False, timeout=1800)
    operations = parse_results(deploy.stdout)
    assert deploy.returncode == 0 and operations and not any(op.error for op in operations), deploy.stdout[-6000:]
    assert re.search(r"\d+ ok, 0 warnings, 0 errors", deploy.stdout), deploy.stdout[-4000:]
    again = ctl.ssh(f"cd {project} && .venv/bin/pyinfra -y {inventory} deploy.py 2>&1", check=False, timeout=600)
    assert again.returncode == 0 and not [op.name for op in parse_results(again.stdout) if op.success]
