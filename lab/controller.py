"""mailhost installed on a lab host, to run it as a controller with that host's own Python (Debian 13's 3.13).

Lab hosts reach only Debian's archive, so the Python packages come as wheels fetched on this machine for the
host's Python (`pip download --python-version`) and copied over. The wheels are cached per Python version and
pyproject.toml; a package published only as source (dkimpy) is built here into a wheel first.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from .config import LabConfig
from .deploys import REPO
from .hosts import TestHost
from .images import _lock
from .procs import LabError, run

SOURCE_ONLY = ["dkimpy==1.1.8", "authres==1.2.0"]  # no wheels on PyPI; pure Python: a wheel built here fits any Python 3
PROJECT_DIR = "/opt/mailhost"
WHEEL_DIR = "/opt/mailhost-wheels"


def wheels(cfg: LabConfig, python_version: str) -> Path:
    """A folder of wheels for `.[test]` on CPython `python_version` (e.g. "3.13") on x86_64, built once."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + python_version.encode()).hexdigest()[:16]
    final = cfg.cache_dir / "wheels" / f"cp{python_version.replace('.', '')}-{digest}"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with _lock(cfg.cache_dir / "wheels.lock"):
        if not (final / ".complete").exists():
            tmp = final.with_name(final.name + ".building")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            run([*pip, "wheel", "--no-deps", "-w", str(tmp), *SOURCE_ONLY], timeout=600)
            abi = "cp" + python_version.replace(".", "")
            platforms = [arg for p in ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
                         for arg in ("--platform", p)]
            run([*pip, "download", "-d", str(tmp), "--find-links", str(tmp), "--only-binary=:all:",
                 "--python-version", python_version, "--implementation", "cp", "--abi", abi, *platforms,
                 f"{REPO}[test]", "setuptools"], timeout=900)
            (tmp / ".complete").write_text(python_version)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    return final


def _tar(files: dict[str, Path]) -> bytes:
    """A tar of {name in the archive: path here}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name, recursive=False)
    return buf.getvalue()


def copy_paths(host: TestHost, paths: list[Path]) -> None:
    """Copy files and folders (recursively) to the same absolute paths on `host`."""
    files = {}
    for path in paths:
        for item in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            files[str(item).lstrip("/")] = item
    host.put(_tar(files), "/tmp/mailhost-copy.tar", mode="600")
    host.ssh("tar -xpf /tmp/mailhost-copy.tar -C / && rm /tmp/mailhost-copy.tar")


def install_mailhost(cfg: LabConfig, host: TestHost) -> str:
    """Install this checkout (what git tracks, and new files it does not ignore) with its test extras into a
    venv on `host`, from wheels for the host's Python; return the project folder there."""
    version = host.ssh("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").stdout.strip()
    wheel_dir = wheels(cfg, version)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        raise LabError(f"installing mailhost on a lab host needs a git checkout: {listed.stderr.decode()[-300:]}")
    sources = {name: REPO / name for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()}
    host.put(_tar(sources), "/tmp/mailhost-src.tar", mode="600")
    host.put(_tar({p.name: p for p in wheel_dir.glob("*.whl")}), "/tmp/mailhost-wheels.tar", mode="600")
    host.ssh("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv "
             ">/dev/null", timeout=600)
    host.ssh(f"set -e; rm -rf {PROJECT_DIR} {WHEEL_DIR}; mkdir -p {PROJECT_DIR} {WHEEL_DIR}; "
             f"tar -xf /tmp/mailhost-src.tar -C {PROJECT_DIR}; tar -xf /tmp/mailhost-wheels.tar -C {WHEEL_DIR}; "
             f"rm /tmp/mailhost-src.tar /tmp/mailhost-wheels.tar; python3 -m venv {PROJECT_DIR}/.venv; "
             f"{PROJECT_DIR}/.venv/bin/pip install -q --disable-pip-version-check --no-index "
             f"--find-links {WHEEL_DIR} -e '{PROJECT_DIR}[test]'", timeout=900)
    return PROJECT_DIR
