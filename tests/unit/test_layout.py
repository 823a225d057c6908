"""The product stands apart from its test bed: nothing a user runs imports the lab or the test-only packages."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import importlib, pkgutil, sys
import mailhost, roles, stages
for package in (mailhost, roles, stages):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("lab", "moto", "aiosmtpd"))))
"""


def test_no_product_module_imports_the_test_bed():
    run = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "", f"the product imports the test bed: {run.stdout}"
