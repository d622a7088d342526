"""All benchmarks, one after the other (`make bench`), or one by name: `python -m bench api|sip|join|sfu|sfu-janus|web`.

Each prints its figures; bench/README.md keeps the last ones with how they were taken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {
    "api": [sys.executable, "-m", "bench.api_load"],
    "sip": [sys.executable, "bench/sip/bench.py"],
    "join": [sys.executable, "-m", "bench.join"],
    "sfu": [sys.executable, "-m", "bench.sfu"],
    "sfu-janus": [sys.executable, "-m", "bench.sfu", "janus-compare"],
    "web": [sys.executable, "-m", "bench.web"],
}


def main() -> None:
    names = sys.argv[1:] or list(BENCHES)
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; choose among {', '.join(BENCHES)}")
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        if subprocess.run(BENCHES[name], cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


main()
