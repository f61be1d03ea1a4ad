#!/usr/bin/env python3
"""Run every benchmark in bench/ (each prints its own ratios against a named baseline)."""

import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    scripts = sorted(p for p in glob.glob(os.path.join(HERE, "*.py")) if os.path.basename(p) != "run.py")
    failed = []
    for script in scripts:
        print("== %s" % os.path.relpath(script, os.path.dirname(HERE)), flush=True)
        if subprocess.run([sys.executable, script] + sys.argv[1:], check=False).returncode != 0:
            failed.append(script)
    if failed:
        print("failed: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
