"""Runs the SFU room benchmark: a server process plus a load-generator process per run; medians of the runs.

.venv/bin/python -m bench.sfu                 # everything, 3 runs each, 5 s warm-up, 30 s window
.venv/bin/python -m bench.sfu --runs 1 --window 10 --only forward
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCENARIOS: list[tuple[str, list[str]]] = [
    ("forward-1", ["forward", "--subscribers", "1"]),
    ("forward-5", ["forward", "--subscribers", "5"]),
    ("forward-10", ["forward", "--subscribers", "10"]),
    ("audio-10", ["audio", "--participants", "10"]),
    ("audio-50", ["audio", "--participants", "50"]),
    ("audio-100", ["audio", "--participants", "100"]),
    ("full-100", ["full", "--participants", "100", "--last-n", "4", "--subscribers", "0"]),
]


def run_once(args: list[str], port: int, warmup: float, window: float) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sfu.server", "--control-port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "ready"
        timing = ["--warmup", str(warmup), "--window", str(window)]
        out = subprocess.run(
            [sys.executable, "-m", "bench.sfu.loadgen", *args, *timing, "--control-port", str(port)],
            capture_output=True,
            text=True,
            timeout=warmup + window + 240,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(10)


def median(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in results[0].items():
        values = [r[key] for r in results if isinstance(r.get(key), (int, float))]
        merged[key] = statistics.median(values) if isinstance(value, (int, float)) and values else value
    merged["runs"] = len(results)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--only", nargs="*", default=None, help="scenario name prefixes")
    parser.add_argument("--output", default=str(Path(__file__).with_name("results.json")))
    options = parser.parse_args()
    results: dict[str, Any] = {}
    port = 47100
    for name, args in SCENARIOS:
        if options.only and not any(name.startswith(prefix) for prefix in options.only):
            continue
        runs = []
        for _ in range(options.runs):
            port += 1
            runs.append(run_once(args, port, options.warmup, options.window))
            time.sleep(1)
        results[name] = median(runs)
        print(name, json.dumps(results[name]), flush=True)
    Path(options.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
