#!/usr/bin/env python3
"""The hostile-spec properties of `tests/unit/test_spec_fuzz.py` at scale: 10,000 generated specs by default
(CI runs a few hundred), each refused with a short SpecError or rendered without a stray line. Prints how
many ran, how many the loader accepted, and how long it took; a failure prints Hypothesis's smallest case.

    .venv/bin/python benchmarks/spec_fuzz.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    examples = parser.parse_args().examples
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
                           "tests/unit/test_spec_fuzz.py"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MAILHOST_FUZZ_EXAMPLES": str(examples)})
    seconds = time.monotonic() - start
    shares = dict((kind, float(share)) for share, kind in re.findall(r"([\d.]+)%, (accepted|refused)", done.stdout))
    print(f"{'generated specs':<34} {examples:>10}")
    print(f"{'refused with a SpecError':<34} {shares.get('refused', 0):>9.1f}%")
    print(f"{'accepted and rendered cleanly':<34} {shares.get('accepted', 0):>9.1f}%")
    print(f"{'time':<34} {seconds:>9.1f} s  ({1000 * seconds / examples:.1f} ms a spec)")
    print(f"{'result':<34} {'all held' if done.returncode == 0 else 'FAILED'}")
    if done.returncode:
        print(done.stdout[-6000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
